"""Fetch pieces without a server: S3 answers (botocore Stubber) to the one fetch path, checksum rules, the sweep."""

from __future__ import annotations

import io
import os
import time
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from contract import ObjectHead
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import CorruptArchive, RestoreExpired, RestoreInProgress, TransferError
from onprem.finisher.fetch.checksum import full_object_checksum
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, FetchedAndDebagged, fetch_and_debag
from onprem.finisher.work.sweep import sweep_orphans

RID = "W1NLM4700"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
ETAG = '"0123456789abcdef0123456789abcdef"'
SETTINGS = FetchSettings(part_size=4, max_concurrency=1, min_free_bytes=0)


@pytest.fixture
def stubbed():  # type: ignore[no-untyped-def]
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber


def _head(stubber: Stubber, size: int, **extra: object) -> None:
    stubber.add_response("head_object", {"ContentLength": size, "ETag": ETAG, **extra},
                         {"Bucket": "b", "Key": KEY, "ChecksumMode": "ENABLED", "IfMatch": ETAG})


def _get(stubber: Stubber, content: bytes) -> None:
    stubber.add_response("get_object", {"Body": StreamingBody(io.BytesIO(content), len(content)), "ETag": ETAG},
                         {"Bucket": "b", "Key": KEY, "IfMatch": ETAG, "Range": ANY})


def _request(size: int | None = None) -> FetchRequest:
    return FetchRequest(RID, "b", KEY, size, ETAG, None)


def _fetch(client: object, request: FetchRequest, staging: Path, settings: FetchSettings) -> FetchedAndDebagged:
    """The one fetch path (the stubbed bytes are no zip: a call that gets that far ends in CorruptArchive)."""
    return fetch_and_debag(client, FetchDebagJob(request, staging, settings, DebagSettings(fsync=False)))


def test_restore_still_running_is_restore_in_progress(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _head(stubber, 10, StorageClass="DEEP_ARCHIVE", Restore='ongoing-request="true"')
    with pytest.raises(RestoreInProgress, match=f"^{RID}: restore of s3://b/{KEY} is still in progress") as caught:
        _fetch(client, _request(), tmp_path, SETTINGS)
    assert caught.value.retry_after


def test_get_refused_as_invalid_object_state_is_restore_expired(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _head(stubber, 8, StorageClass="DEEP_ARCHIVE",
          Restore='ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"')
    stubber.add_client_error("get_object", "InvalidObjectState", "The operation is not valid", 403)
    with pytest.raises(RestoreExpired, match="restored copy is gone"):
        _fetch(client, _request(), tmp_path, SETTINGS)


def _pinned(size: int, **head: object) -> FetchRequest:
    """A request carrying the attempt's HEAD (the worker's restore check made it)."""
    return replace(_request(size), head=ObjectHead.from_response({"ContentLength": size, "ETag": ETAG, **head}))


def test_a_download_pinned_to_the_attempts_head_does_not_head_again(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _get(stubber, b"abcd")  # the stubber refuses any call not queued: a HEAD here would fail the test
    with pytest.raises(CorruptArchive):  # the tail was read (no zip in it): no HEAD before it
        _fetch(client, _pinned(4), tmp_path, SETTINGS)
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("head", "message"), [
    ({"ETag": '"ffffffffffffffffffffffffffffffff"'}, 'ETag "ffff.*the message says'),
    ({"VersionId": "v2"}, "HEAD saw version v2, the message says v1"),
    ({"ContentLength": 5}, "5 bytes, the message says 4"),
])
def test_the_attempts_head_still_has_to_match_the_message(stubbed, tmp_path: Path, head: dict[str, object],
                                                          message: str) -> None:
    from onprem.finisher.errors import ObjectChanged

    client, _ = stubbed
    request = replace(_pinned(4, **head), version_id="v1")
    with pytest.raises(ObjectChanged, match=message):
        _fetch(client, request, tmp_path, SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_an_attempts_head_of_an_unrestored_copy_is_restore_expired(stubbed, tmp_path: Path) -> None:
    client, _ = stubbed
    with pytest.raises(RestoreExpired, match="DEEP_ARCHIVE with no restored copy"):
        _fetch(client, _pinned(4, StorageClass="DEEP_ARCHIVE"), tmp_path, SETTINGS)


def test_size_differing_from_the_message_is_object_changed(stubbed, tmp_path: Path) -> None:
    from onprem.finisher.errors import ObjectChanged

    client, stubber = stubbed
    _head(stubber, 10)
    with pytest.raises(ObjectChanged, match="10 bytes, the message says 9"):
        _fetch(client, _request(size=9), tmp_path, SETTINGS)


def test_a_transient_get_failure_is_retried(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _head(stubber, 4)
    stubber.add_client_error("get_object", "InternalError", "try again", 500)
    _get(stubber, b"abcd")
    with pytest.raises(CorruptArchive):  # the second GET's bytes were read (no zip in them)
        _fetch(client, _request(), tmp_path, SETTINGS)
    stubber.assert_no_pending_responses()


def test_a_short_body_is_a_transfer_error_after_the_last_attempt(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _head(stubber, 4)
    for _ in range(SETTINGS.part_attempts):  # a short body is read on from the byte reached: none ever comes
        _get(stubber, b"")
    with pytest.raises(TransferError, match="ended"):
        _fetch(client, _request(), tmp_path, SETTINGS)


@pytest.mark.parametrize(("head", "verifiable", "note"), [
    ({"ChecksumSHA256": "x", "ETag": '"a"'}, True, "sha256 full-object"),
    ({"ChecksumSHA256": "x-3", "ETag": '"a-3"'}, False, "composite"),
    ({"ChecksumCRC32": "x", "ETag": '"a-3"', "ChecksumType": "FULL_OBJECT"}, True, "crc32 full-object"),
    ({"ChecksumCRC32C": "x", "ETag": '"a-3"', "ChecksumType": "COMPOSITE"}, False, "composite"),
    ({"ChecksumCRC64NVME": "x", "ETag": '"a"', "ChecksumType": "FULL_OBJECT"}, True, "crc64nvme full-object"),
    ({"ETag": '"a"'}, False, "no S3 checksum"),
])
def test_which_checksums_are_full_object(head: dict[str, str], verifiable: bool, note: str) -> None:
    checksum, reason = full_object_checksum(head)
    assert (checksum is not None) == verifiable and note in reason


def test_sweep_removes_only_what_cannot_be_resumed(tmp_path: Path) -> None:
    names = ["a.bag.zip.part", "a.bag.zip.part.json",  # an older finisher's whole-zip download: nothing resumes it
             "d.bag.zip.part.json.tmp",  # its torn journal write
             "e.bag.zip"]  # no temp file of ours: kept
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / ".debag-W1-etag").mkdir()  # resumable by segment: kept
    (tmp_path / ".debag-failed-W2-etag-1").mkdir()
    two_hours_ago = time.time() - 2 * 3600
    for path in tmp_path.iterdir():
        os.utime(path, (two_hours_ago, two_hours_ago))
    removed = {p.name for p in sweep_orphans(tmp_path)}
    assert removed == {"a.bag.zip.part", "a.bag.zip.part.json", "d.bag.zip.part.json.tmp"}


def test_sweep_keeps_what_another_finisher_just_started(tmp_path: Path) -> None:
    # a second finisher sharing the staging area starts while the first has just made its de-bag temp dir
    (tmp_path / ".debag-W1-etag").mkdir()
    (tmp_path / "c.bag.zip.part.json.tmp").write_text("x")
    assert sweep_orphans(tmp_path, max_age_seconds=0) == []
    assert (tmp_path / ".debag-W1-etag").exists()


def test_sweep_removes_stale_resumable_state_past_the_age_limit(tmp_path: Path) -> None:
    old_dir = tmp_path / ".debag-W1-etag"
    old_dir.mkdir()
    evidence = tmp_path / ".debag-failed-W2-etag-1"
    evidence.mkdir()
    long_ago = time.time() - 30 * 24 * 3600
    for path in tmp_path.iterdir():
        os.utime(path, (long_ago, long_ago))
    removed = {p.name for p in sweep_orphans(tmp_path, max_age_seconds=7 * 24 * 3600)}
    assert removed == {".debag-W1-etag"}
    assert evidence.exists()
