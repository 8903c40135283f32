"""Fetch against a real moto S3 server on loopback: verify, resume after SIGKILL, pinning, restore states; and
one HEAD per attempt through the worker with the real stages (in-process moto)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from harness.bags import make_bdrc_bag_zip
from harness.zip_edits import tamper_member
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import (
    ChecksumMismatch,
    InsufficientSpace,
    ObjectChanged,
    ObjectMissing,
    RestoreExpired,
)
from onprem.finisher.fetch.download import FetchRequest, FetchSettings, fetch_object
from onprem.finisher.metrics import LogMetrics
from onprem.finisher.progress import CountingProgress, NullProgress
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.runtime import build_worker
from onprem.finisher.work.wiring import real_stages
from tests.integration.moto_endpoint import CREDENTIALS
from tests.integration.worker_support import REGION, aws, send, stage_object, worker_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def _put(s3, bucket: str, body: bytes, **kwargs) -> FetchRequest:  # type: ignore[no-untyped-def]
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=body, **kwargs)
    return FetchRequest(RID, bucket, KEY, len(body), put["ETag"], put.get("VersionId"))


def _count_gets(s3) -> list[str]:  # type: ignore[no-untyped-def]
    ranges: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: ranges.append(params["headers"]["Range"]))
    return ranges


def test_fetch_downloads_in_parts_and_verifies_the_sha256(s3, bucket: str, tmp_path: Path) -> None:
    body = os.urandom(1024 * 1024 + 17)
    request = _put(s3, bucket, body, ChecksumAlgorithm="SHA256")
    progress = CountingProgress()
    result = fetch_object(s3, request, tmp_path, SMALL_PARTS, progress)
    assert result.path == tmp_path / f"{RID}.bag.zip" and result.path.read_bytes() == body
    assert (result.checksum_verified, result.parts_total, result.parts_downloaded) == ("sha256", 5, 5)
    assert progress.bytes_done == len(body) and progress.finished
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{RID}.bag.zip", f"{RID}.bag.zip.fetched.json"]


def test_crc32_full_object_checksum_is_verified(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, os.urandom(300_000), ChecksumAlgorithm="CRC32")
    assert fetch_object(s3, request, tmp_path, SMALL_PARTS).checksum_verified == "crc32"


def test_object_without_checksum_is_checked_by_size_and_etag_only(s3, bucket: str, tmp_path: Path) -> None:
    plain = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1",
                         config=Config(request_checksum_calculation="when_required"))  # boto3 adds CRC32 by default
    result = fetch_object(s3, _put(plain, bucket, os.urandom(1000)), tmp_path, SMALL_PARTS)
    assert result.checksum_verified is None and "no S3 checksum" in result.checksum_note


def test_multipart_composite_checksum_is_not_claimed_as_verified(s3, bucket: str, tmp_path: Path) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=KEY, ChecksumAlgorithm="SHA256")
    parts = []
    for number, body in enumerate((os.urandom(5 * 2**20), os.urandom(1000)), start=1):
        part = s3.upload_part(Bucket=bucket, Key=KEY, UploadId=upload["UploadId"], PartNumber=number, Body=body,
                              ChecksumAlgorithm="SHA256")
        parts.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key=KEY, UploadId=upload["UploadId"],
                                        MultipartUpload={"Parts": parts})
    request = FetchRequest(RID, bucket, KEY, None, done["ETag"], done.get("VersionId"))
    result = fetch_object(s3, request, tmp_path, FetchSettings(part_size=2**20, min_free_bytes=0))
    assert result.checksum_verified is None and "composite" in result.checksum_note
    assert result.size == 5 * 2**20 + 1000


def test_a_second_fetch_of_a_finished_download_does_not_download_again(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, os.urandom(600_000))
    fetch_object(s3, request, tmp_path, SMALL_PARTS)
    gets = _count_gets(s3)
    assert fetch_object(s3, request, tmp_path, SMALL_PARTS).parts_downloaded == 0
    assert gets == []


_CHILD = """
import json, sys, threading
from pathlib import Path
import boto3
from onprem.finisher.fetch.download import FetchRequest, FetchSettings, fetch_object
endpoint, dest, bucket, key, etag, version, size = sys.argv[1:8]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
journal = Path(dest) / (Path(key).name + ".part.json")
def hold_after_two_parts(**_):
    try:
        done = json.loads(journal.read_text())["done"]
    except (OSError, ValueError):
        done = []
    if len(done) >= 2:
        threading.Event().wait()  # stay here until the test kills this process
s3.meta.events.register("before-call.s3.GetObject", hold_after_two_parts)
request = FetchRequest("W1NLM4700", bucket, key, int(size), etag, version)
fetch_object(s3, request, Path(dest), FetchSettings(part_size=256 * 1024, max_concurrency=1, min_free_bytes=0))
"""


def test_fetch_resumes_after_sigkill_without_downloading_finished_parts_again(
    s3, bucket: str, endpoint: str, tmp_path: Path,
) -> None:
    body = os.urandom(2 * 2**20 + 999)
    request = _put(s3, bucket, body, ChecksumAlgorithm="SHA256")
    journal = tmp_path / f"{RID}.bag.zip.part.json"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, endpoint, str(tmp_path), bucket, KEY, request.etag, request.version_id,
         str(len(body))], cwd=REPO_ROOT, env={**os.environ, **CREDENTIALS},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None:
            if journal.exists() and len(json.loads(journal.read_text()).get("done", [])) >= 2:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the child finished or died before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    done_before = set(json.loads(journal.read_text())["done"])
    assert len(done_before) >= 2 and (tmp_path / f"{RID}.bag.zip.part").exists()

    gets = _count_gets(s3)
    result = fetch_object(s3, request, tmp_path, SMALL_PARTS)
    assert result.parts_resumed == len(done_before) and result.parts_downloaded == result.parts_total - len(done_before)
    assert len(gets) == result.parts_downloaded
    resumed_ranges = {f"bytes={n * 256 * 1024}-{min((n + 1) * 256 * 1024, len(body)) - 1}" for n in done_before}
    assert resumed_ranges.isdisjoint(gets)
    assert result.checksum_verified == "sha256"
    assert hashlib.sha256(result.path.read_bytes()).digest() == hashlib.sha256(body).digest()
    assert not journal.exists()


def test_object_overwritten_between_head_and_get_raises_object_changed(s3, tmp_path: Path) -> None:
    bucket = f"unversioned-{uuid.uuid4().hex[:12]}"  # no version to pin: only the GET's IfMatch protects
    s3.create_bucket(Bucket=bucket)
    request = _put(s3, bucket, os.urandom(500_000))
    other = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1")
    overwritten: list[bool] = []

    def overwrite(**_: object) -> None:
        if not overwritten:
            overwritten.append(True)
            other.put_object(Bucket=bucket, Key=KEY, Body=b"a newer bag")

    s3.meta.events.register("after-call.s3.HeadObject", overwrite)
    with pytest.raises(ObjectChanged, match=f"^{RID}: .*overwritten"):
        fetch_object(s3, request, tmp_path, SMALL_PARTS)
    assert overwritten and list(tmp_path.iterdir()) == []


def test_etag_in_the_message_that_no_longer_matches_raises_object_changed(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, b"first version")
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"second version")
    stale = FetchRequest(RID, bucket, KEY, None, request.etag, None)
    with pytest.raises(ObjectChanged):
        fetch_object(s3, stale, tmp_path, SMALL_PARTS)


def test_pinned_version_is_fetched_even_after_an_overwrite(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, b"the version in the message")
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"a later upload")
    assert fetch_object(s3, request, tmp_path, SMALL_PARTS).path.read_bytes() == b"the version in the message"


def test_missing_object_raises_object_missing(s3, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ObjectMissing, match="does not exist"):
        fetch_object(s3, FetchRequest(RID, bucket, KEY), tmp_path, SMALL_PARTS)


def test_deep_archive_object_is_fetchable_only_once_restored(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, os.urandom(10_000), StorageClass="DEEP_ARCHIVE")
    with pytest.raises(RestoreExpired, match="DEEP_ARCHIVE with no restored copy"):
        fetch_object(s3, request, tmp_path, SMALL_PARTS)
    s3.restore_object(Bucket=bucket, Key=KEY, VersionId=request.version_id,
                      RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}})
    assert 'ongoing-request="false"' in s3.head_object(Bucket=bucket, Key=KEY)["Restore"]  # moto: done at once
    assert fetch_object(s3, request, tmp_path, SMALL_PARTS).size == 10_000


def test_insufficient_space_fails_before_any_download(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, os.urandom(100_000))
    settings = FetchSettings(part_size=2**20, min_free_bytes=50_000)
    with pytest.raises(InsufficientSpace) as caught:
        fetch_object(s3, request, tmp_path, settings, free_bytes=lambda _path: 120_000)
    assert caught.value.retry_after and str(caught.value).startswith(f"{RID}: ")
    assert list(tmp_path.iterdir()) == []
    assert fetch_object(s3, request, tmp_path, settings, free_bytes=lambda _path: 150_001).size == 100_000


def test_fetched_bag_with_a_changed_byte_is_rejected_naming_the_file(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path / "build")
    member = f"data/{RID}-I1KG1/images/{RID}-I1KG1_0003.tif"
    tamper_member(zip_path, f"{RID}.bag/{member}", offset=42)
    request = _put(s3, bucket, zip_path.read_bytes(), ChecksumAlgorithm="SHA256")
    fetched = fetch_object(s3, request, tmp_path / "downloads", SMALL_PARTS)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(ChecksumMismatch, match=rf"^{RID}: checksum mismatch for {member} \(sha256 expected"):
        debag_archive(fetched.path, RID, staging, DebagSettings(workers=2, fsync=False), version_tag=fetched.etag)
    assert not (staging / RID).exists() and fetched.path.exists()


@pytest.mark.parametrize("overrides", [
    pytest.param({}, id="one-segment"),
    pytest.param({"fetch_part_size": 8192}, id="segments"),
    pytest.param({"fetch_debag_overlap": False}, id="fetch-then-debag"),
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
