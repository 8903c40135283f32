"""Delivery faults at the fetch stage (the one fetch path: ranged GETs de-bagged as they arrive), on a loopback moto
server: throttling, restore states, resets.

What the worker then does with each named error (retry later, DLQ) is checked in test_worker_faults.py.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from harness.bags import make_bdrc_bag_zip
from harness.proxy import ShapingProxy
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import RestoreInProgress, RetryableError, TransferError
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, FetchedAndDebagged, fetch_and_debag
from tests.reliability.faults import inject, restore_ongoing, slow_down, sqs_throttling, sqs_unavailable

RID = "W1NLM4700"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
PARTS = FetchSettings(part_size=256 * 1024, max_concurrency=1, min_free_bytes=0)


def _bag(tmp_path: Path) -> bytes:
    """~720 KB stored: read as the tail, two tag files, the folder entry and three payload segments of <256 KiB."""
    return make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=24, file_size=30_000,
                             compression=zipfile.ZIP_STORED).read_bytes()


def _put(s3, bucket: str, body: bytes, **kwargs) -> FetchRequest:  # type: ignore[no-untyped-def]
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=body, ChecksumAlgorithm="CRC32", **kwargs)
    return FetchRequest(RID, bucket, KEY, len(body), put["ETag"], put.get("VersionId"))


def _fetch(client: object, request: FetchRequest, tmp_path: Path) -> FetchedAndDebagged:
    return fetch_and_debag(client, FetchDebagJob(request, tmp_path / "staging", PARTS,
                                                 DebagSettings(workers=1, fsync=False)))


def _intact(result: FetchedAndDebagged, tmp_path: Path) -> bool:
    """Every member verified (CRC-32, manifests) and the whole object against S3's CRC32: the work placed."""
    return result.fetch.checksum_verified == "crc32" and len(list((tmp_path / "staging" / RID).rglob("*.tif"))) == 24


def test_get_answered_slow_down_is_retried_and_the_fetch_is_intact(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path))
    (fault,) = inject(s3, slow_down("GetObject", 2))
    result = _fetch(s3, request, tmp_path)
    assert fault.injected == 2 and fault.passed == 7  # the tail, tags, the folder entry, three payload segments
    assert _intact(result, tmp_path)


def test_head_answered_slow_down_is_retried(s3, bucket: str, tmp_path: Path) -> None:
    body = _bag(tmp_path)
    request = _put(s3, bucket, body)
    (fault,) = inject(s3, slow_down("HeadObject", 2))
    assert _fetch(s3, request, tmp_path).fetch.size == len(body)
    assert fault.injected == 2


def test_slow_down_past_every_retry_is_retryable_and_the_next_fetch_resumes(
    s3, bucket: str, moto_endpoint: str, tmp_path: Path,
) -> None:
    request = _put(s3, bucket, _bag(tmp_path))
    impatient = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                             config=Config(retries={"mode": "standard", "max_attempts": 1}))
    # the tail, two tag files, the folder entry, one payload segment; then 503s
    (fault,) = inject(impatient, slow_down("GetObject", times=1000, after=5))
    with pytest.raises(TransferError) as caught:
        _fetch(impatient, request, tmp_path)
    assert isinstance(caught.value, RetryableError) and str(caught.value).startswith(f"{RID}: ")
    assert "SlowDown" in str(caught.value) and fault.passed == 5
    assert not (tmp_path / "staging" / RID).exists()  # nothing placed

    gets: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: gets.append(params["headers"]["Range"]))
    result = _fetch(s3, request, tmp_path)
    # the first payload segment (and the folder entry before the tags: a segment of its own) not read again
    assert result.fetch.segments_resumed == 2 and len(gets) == 5 and _intact(result, tmp_path)


def test_restore_still_in_progress_is_retryable_later_and_fetches_nothing(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path), StorageClass="DEEP_ARCHIVE")
    s3.restore_object(Bucket=bucket, Key=KEY, VersionId=request.version_id,
                      RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}})
    hook = restore_ongoing(s3)
    with pytest.raises(RestoreInProgress, match=f"^{RID}: restore of .* still in progress") as caught:
        _fetch(s3, request, tmp_path)
    assert hook.seen == 1 and caught.value.retry_after and caught.value.retry_after >= 600
    assert not (tmp_path / "staging").exists() or list((tmp_path / "staging").iterdir()) == []


@pytest.mark.parametrize("fault", [sqs_throttling("ReceiveMessage", 2), sqs_unavailable("ReceiveMessage", 2)],
                         ids=["throttling", "503"])
def test_injected_sqs_errors_are_retried_by_botocore(moto_endpoint: str, aws_credentials: None, fault) -> None:  # type: ignore[no-untyped-def]
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"hook-check-{fault.code}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    inject(sqs, fault)
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
    assert [m["Body"] for m in messages] == ["hello"] and fault.injected == 2


# --- connection resets: the benchmark's loopback proxy cuts the stream (server → client) after N bytes ---------
@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[ShapingProxy]:
    port = int(moto_endpoint.rsplit(":", 1)[1])
    with ShapingProxy("127.0.0.1", port) as running:
        yield running


def test_connection_reset_mid_segment_is_retried_and_the_fetch_is_intact(
    s3, bucket: str, proxy: ShapingProxy, tmp_path: Path,
) -> None:
    request = _put(s3, bucket, _bag(tmp_path))
    via_proxy = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1")
    _fetch(via_proxy, request, tmp_path / "warm")  # the tail and the tags: small GETs, under the cut
    proxy.cut_after_bytes, proxy.cut_connections = 100_000, 1  # inside a payload segment (one connection a request)
    result = _fetch(via_proxy, request, tmp_path)
    assert proxy.stats().cuts == 1 and _intact(result, tmp_path)


def test_resets_on_every_connection_are_retryable_and_the_next_fetch_resumes(
    s3, bucket: str, proxy: ShapingProxy, tmp_path: Path,
) -> None:
    request = _put(s3, bucket, _bag(tmp_path))
    proxy.cut_after_bytes = 100_000  # every connection dies before one payload segment is through
    via_proxy = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                             config=Config(retries={"mode": "standard", "max_attempts": 1}))
    with pytest.raises(TransferError) as caught:
        _fetch(via_proxy, request, tmp_path)
    assert str(caught.value).startswith(f"{RID}: GET bytes=") and proxy.stats().cuts >= PARTS.part_attempts
    assert not (tmp_path / "staging" / RID).exists()

    proxy.cut_after_bytes = None  # the network is back
    assert _intact(_fetch(via_proxy, request, tmp_path), tmp_path)
