"""The one fetch path against a real moto S3 server on loopback: the message's version pinned, restore states, a
missing or changed object; and one HEAD per attempt through the worker with the real stages (in-process moto).

Checksums, resume after SIGKILL, overwrites mid-read, space and tampered members: test_fetch_segments_moto.py,
test_fetch_ranges_moto.py and test_fetch_kill_restart.py.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from harness.bags import make_bdrc_bag_zip
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import ObjectChanged, ObjectMissing, RestoreExpired
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, FetchedAndDebagged, fetch_and_debag
from onprem.finisher.metrics import LogMetrics
from onprem.finisher.progress import NullProgress
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.runtime import build_worker
from onprem.finisher.work.wiring import real_stages
from tests.integration.worker_support import REGION, aws, send, stage_object, worker_settings

RID = "W1NLM4700"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
__all__ = ["aws"]  # the worker's in-process moto fixture
SMALL_PARTS = FetchSettings(part_size=256 * 1024, max_concurrency=4, min_free_bytes=0)


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"staging-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _bag(tmp_path: Path, files: int = 3) -> bytes:
    return make_bdrc_bag_zip(tmp_path / f"build-{files}", rids=(RID,), files_per_work=files).read_bytes()


def _put(s3, bucket: str, body: bytes, **kwargs) -> FetchRequest:  # type: ignore[no-untyped-def]
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=body, **kwargs)
    return FetchRequest(RID, bucket, KEY, len(body), put["ETag"], put.get("VersionId"))


def _fetch(s3, request: FetchRequest, tmp_path: Path) -> FetchedAndDebagged:  # type: ignore[no-untyped-def]
    return fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "staging", SMALL_PARTS, DebagSettings(fsync=False)))


def _images(tmp_path: Path) -> int:
    return len(list((tmp_path / "staging" / RID).rglob("*.tif")))


def test_object_without_checksum_is_checked_by_size_and_etag_only(s3, bucket: str, tmp_path: Path) -> None:
    plain = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1",
                         config=Config(request_checksum_calculation="when_required"))  # boto3 adds CRC32 by default
    result = _fetch(s3, _put(plain, bucket, _bag(tmp_path)), tmp_path)
    assert result.fetch.checksum_verified is None and "no S3 checksum" in result.fetch.checksum_note
    assert _images(tmp_path) == 3


def test_etag_in_the_message_that_no_longer_matches_raises_object_changed(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path))
    s3.put_object(Bucket=bucket, Key=KEY, Body=_bag(tmp_path, files=4))
    stale = FetchRequest(RID, bucket, KEY, None, request.etag, None)
    with pytest.raises(ObjectChanged):
        _fetch(s3, stale, tmp_path)
    assert not (tmp_path / "staging" / RID).exists()


def test_pinned_version_is_fetched_even_after_an_overwrite(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path, files=2))
    s3.put_object(Bucket=bucket, Key=KEY, Body=_bag(tmp_path, files=4))
    _fetch(s3, request, tmp_path)
    assert _images(tmp_path) == 2  # the version in the message, not the later upload


def test_missing_object_raises_object_missing(s3, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ObjectMissing, match="does not exist"):
        _fetch(s3, FetchRequest(RID, bucket, KEY), tmp_path)


def test_deep_archive_object_is_fetchable_only_once_restored(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path), StorageClass="DEEP_ARCHIVE")
    with pytest.raises(RestoreExpired, match="DEEP_ARCHIVE with no restored copy"):
        _fetch(s3, request, tmp_path)
    s3.restore_object(Bucket=bucket, Key=KEY, VersionId=request.version_id,
                      RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}})
    assert 'ongoing-request="false"' in s3.head_object(Bucket=bucket, Key=KEY)["Restore"]  # moto: done at once
    assert _fetch(s3, request, tmp_path).fetch.size == request.size and _images(tmp_path) == 3


@pytest.mark.parametrize("overrides", [
    pytest.param({}, id="one-segment"),
    pytest.param({"fetch_part_size": 8192}, id="segments"),
])
def test_one_attempt_makes_exactly_one_head(tmp_path: Path, aws: AwsClients, overrides: dict[str, object]) -> None:
    settings = worker_settings(tmp_path, min_free_bytes=0, **overrides)
    work = stage_object(aws, make_bdrc_bag_zip(tmp_path / "bags", rids=[RID], file_size=20000), RID)
    heads: list[dict[str, object]] = []
    aws.s3(REGION).meta.events.register("before-call.s3.HeadObject", lambda params, **_: heads.append(params))
    send(aws, work)
    summary = build_worker(settings, clients=aws, stages=real_stages(settings, aws.s3), metrics=LogMetrics(),
                           progress_for=lambda label, rid: NullProgress()).run(drain=True)
    assert summary.outcomes == Counter({"synced": 1})
    # the restore check's HEAD (with checksums) is the one the download pins to: no second HEAD
    assert len(heads) == 1, heads
    assert heads[0]["headers"].get("x-amz-checksum-mode") == "ENABLED"
