"""Fetch pieces without a server: S3 answers (botocore Stubber), checksum rules, the journal, the sweep."""

from __future__ import annotations

import base64
import hashlib
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
from onprem.finisher.errors import IntegrityError, RestoreExpired, RestoreInProgress, TransferError
from onprem.finisher.fetch.checksum import file_checksum, full_object_checksum
from onprem.finisher.fetch.download import FetchRequest, FetchSettings, fetch_object
from onprem.finisher.fetch.journal import DownloadIdentity, FetchJournal
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


def test_restore_still_running_is_restore_in_progress(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _head(stubber, 10, StorageClass="DEEP_ARCHIVE", Restore='ongoing-request="true"')
    with pytest.raises(RestoreInProgress, match=f"^{RID}: restore of s3://b/{KEY} is still in progress") as caught:
        fetch_object(client, _request(), tmp_path, SETTINGS)
    assert caught.value.retry_after


def test_get_refused_as_invalid_object_state_is_restore_expired(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _head(stubber, 8, StorageClass="DEEP_ARCHIVE",
          Restore='ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"')
    stubber.add_client_error("get_object", "InvalidObjectState", "The operation is not valid", 403)
    with pytest.raises(RestoreExpired, match="restored copy is gone"):
        fetch_object(client, _request(), tmp_path, SETTINGS)


def _pinned(size: int, **head: object) -> FetchRequest:
    """A request carrying the attempt's HEAD (the worker's restore check made it)."""
    return replace(_request(size), head=ObjectHead.from_response({"ContentLength": size, "ETag": ETAG, **head}))


def test_a_download_pinned_to_the_attempts_head_does_not_head_again(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _get(stubber, b"abcd")  # the stubber refuses any call not queued: a HEAD here would fail the test
    assert fetch_object(client, _pinned(4), tmp_path, SETTINGS).path.read_bytes() == b"abcd"
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
        fetch_object(client, request, tmp_path, SETTINGS)
    assert list(tmp_path.iterdir()) == []


def test_an_attempts_head_of_an_unrestored_copy_is_restore_expired(stubbed, tmp_path: Path) -> None:
    client, _ = stubbed
    with pytest.raises(RestoreExpired, match="DEEP_ARCHIVE with no restored copy"):
        fetch_object(client, _pinned(4, StorageClass="DEEP_ARCHIVE"), tmp_path, SETTINGS)


def test_size_differing_from_the_message_is_object_changed(stubbed, tmp_path: Path) -> None:
    from onprem.finisher.errors import ObjectChanged

    client, stubber = stubbed
    _head(stubber, 10)
    with pytest.raises(ObjectChanged, match="10 bytes, the message says 9"):
        fetch_object(client, _request(size=9), tmp_path, SETTINGS)


def test_a_transient_get_failure_is_retried(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _head(stubber, 4)
    stubber.add_client_error("get_object", "InternalError", "try again", 500)
    _get(stubber, b"abcd")
    assert fetch_object(client, _request(), tmp_path, SETTINGS).path.read_bytes() == b"abcd"


def test_a_short_body_is_a_transfer_error_after_the_last_attempt(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    _head(stubber, 4)
    for _ in range(SETTINGS.part_attempts):
        _get(stubber, b"ab")
    with pytest.raises(TransferError, match="ended after 2 bytes"):
        fetch_object(client, _request(), tmp_path, SETTINGS)


def test_wrong_full_object_checksum_discards_the_download(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    _head(stubber, 8, ChecksumSHA256=wrong, ChecksumType="FULL_OBJECT")
    _get(stubber, b"abcd")
    _get(stubber, b"efgh")
    with pytest.raises(IntegrityError, match=f"^{RID}: sha256 mismatch for {RID}.bag.zip"):
        fetch_object(client, _request(), tmp_path, SETTINGS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("head", "verifiable", "note"), [
    ({"ChecksumSHA256": "x", "ETag": '"a"'}, True, "sha256 full-object"),
    ({"ChecksumSHA256": "x-3", "ETag": '"a-3"'}, False, "composite"),
    ({"ChecksumCRC32": "x", "ETag": '"a-3"', "ChecksumType": "FULL_OBJECT"}, True, "crc32 full-object"),
    ({"ChecksumCRC32C": "x", "ETag": '"a-3"', "ChecksumType": "COMPOSITE"}, False, "composite"),
    ({"ETag": '"a"'}, False, "no S3 checksum"),
])
def test_which_checksums_are_full_object(head: dict[str, str], verifiable: bool, note: str) -> None:
    checksum, reason = full_object_checksum(head)
    assert (checksum is not None) == verifiable and note in reason


def test_crc64nvme_without_awscrt_is_reported_not_verified() -> None:
    try:
        import awscrt  # type: ignore[import-not-found]  # noqa: F401
        has_crt = True
    except ImportError:
        has_crt = False
    checksum, reason = full_object_checksum({"ChecksumCRC64NVME": "x", "ChecksumType": "FULL_OBJECT", "ETag": "a"})
    assert (checksum is not None) == has_crt
    assert has_crt or "needs awscrt" in reason


def test_file_checksums_match_s3_encoding(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello")
    assert file_checksum(path, "sha256") == base64.b64encode(hashlib.sha256(b"hello").digest()).decode()
    assert file_checksum(path, "crc32") == "NhCmhg=="


def test_journal_of_another_version_is_not_trusted(tmp_path: Path) -> None:
    identity = DownloadIdentity("b", KEY, ETAG, "v1", 100, 10)
    journal = FetchJournal(tmp_path / "x.part.json", identity)
    journal.mark_done(3)
    assert FetchJournal.load(journal.path, identity).done == {3}
    other = DownloadIdentity("b", KEY, '"other"', "v2", 100, 10)
    assert FetchJournal.load(journal.path, other).done == set()
    journal.path.write_text("{torn")
    assert FetchJournal.load(journal.path, identity).done == set()


def test_sweep_removes_only_what_cannot_be_resumed(tmp_path: Path) -> None:
    names = ["a.bag.zip.part", "a.bag.zip.part.json",  # resumable pair: kept
             "b.bag.zip.part",  # no journal: swept
             "c.bag.zip.part.json",  # no part: swept
             "d.bag.zip.part.json.tmp",  # torn journal write: swept
             "e.bag.zip"]  # a finished download: kept
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / ".debag-W1-etag").mkdir()
    (tmp_path / ".debag-failed-W2-etag-1").mkdir()
    two_hours_ago = time.time() - 2 * 3600
    for path in tmp_path.iterdir():
        os.utime(path, (two_hours_ago, two_hours_ago))
    removed = {p.name for p in sweep_orphans(tmp_path)}
    assert removed == {"b.bag.zip.part", "c.bag.zip.part.json", "d.bag.zip.part.json.tmp"}


def test_sweep_keeps_a_download_another_finisher_just_started(tmp_path: Path) -> None:
    # a second finisher sharing the staging area starts while the first has created its .part but not yet its journal
    (tmp_path / "b.bag.zip.part").write_text("x")
    (tmp_path / "c.bag.zip.part.json.tmp").write_text("x")
    assert sweep_orphans(tmp_path) == []
    assert (tmp_path / "b.bag.zip.part").exists()


def test_sweep_removes_stale_resumable_state_past_the_age_limit(tmp_path: Path) -> None:
    for name in ("a.bag.zip.part", "a.bag.zip.part.json"):
        (tmp_path / name).write_text("x")
    old_dir = tmp_path / ".debag-W1-etag"
    old_dir.mkdir()
    evidence = tmp_path / ".debag-failed-W2-etag-1"
    evidence.mkdir()
    long_ago = time.time() - 30 * 24 * 3600
    for path in tmp_path.iterdir():
        os.utime(path, (long_ago, long_ago))
    removed = {p.name for p in sweep_orphans(tmp_path, max_age_seconds=7 * 24 * 3600)}
    assert removed == {"a.bag.zip.part", "a.bag.zip.part.json", ".debag-W1-etag"}
    assert evidence.exists()


def test_a_journal_without_its_part_file_is_not_trusted(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    identity = DownloadIdentity("b", KEY, ETAG, None, 8, SETTINGS.part_size)
    FetchJournal(tmp_path / f"{RID}.bag.zip.part.json", identity).mark_done(0)
    _head(stubber, 8)
    _get(stubber, b"abcd")
    _get(stubber, b"efgh")
    result = fetch_object(client, _request(), tmp_path, SETTINGS)
    assert result.parts_downloaded == 2 and result.path.read_bytes() == b"abcdefgh"
