"""Delivery faults at the fetch stage, on a loopback moto server: throttling, restore states, resets.

What the worker then does with each named error (retry later, DLQ) is checked in test_worker_faults.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from harness.proxy import ShapingProxy
from onprem.finisher.errors import RestoreInProgress, RetryableError, TransferError
from onprem.finisher.fetch.download import FetchRequest, FetchSettings, fetch_object
from tests.reliability.faults import inject, restore_ongoing, slow_down, sqs_throttling, sqs_unavailable

RID = "W1NLM4700"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
PARTS = FetchSettings(part_size=256 * 1024, max_concurrency=1, min_free_bytes=0)


def _put(s3, bucket: str, body: bytes, **kwargs) -> FetchRequest:  # type: ignore[no-untyped-def]
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=body, ChecksumAlgorithm="SHA256", **kwargs)
    return FetchRequest(RID, bucket, KEY, len(body), put["ETag"], put.get("VersionId"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_get_answered_slow_down_is_retried_and_the_download_is_intact(s3, bucket: str, tmp_path: Path) -> None:
    body = os.urandom(600_000)
    request = _put(s3, bucket, body)
    (fault,) = inject(s3, slow_down("GetObject", 2))
    result = fetch_object(s3, request, tmp_path, PARTS)
    assert fault.injected == 2 and fault.passed == result.parts_total
    assert result.checksum_verified == "sha256" and _sha256(result.path) == hashlib.sha256(body).hexdigest()


def test_head_answered_slow_down_is_retried(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, os.urandom(10_000))
    (fault,) = inject(s3, slow_down("HeadObject", 2))
    assert fetch_object(s3, request, tmp_path, PARTS).size == 10_000
    assert fault.injected == 2


def test_slow_down_past_every_retry_is_retryable_and_the_next_fetch_resumes(
    s3, bucket: str, moto_endpoint: str, tmp_path: Path,
) -> None:
    body = os.urandom(3 * 256 * 1024 + 5)
    request = _put(s3, bucket, body)
    impatient = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                             config=Config(retries={"mode": "standard", "max_attempts": 1}))
    inject(impatient, slow_down("GetObject", times=1000, after=1))  # the first part gets through, then 503s
    with pytest.raises(TransferError) as caught:
        fetch_object(impatient, request, tmp_path, PARTS)
    assert isinstance(caught.value, RetryableError) and str(caught.value).startswith(f"{RID}: ")
    assert "SlowDown" in str(caught.value)
    journal = tmp_path / f"{RID}.bag.zip.part.json"
    assert json.loads(journal.read_text())["done"] == [0] and not (tmp_path / f"{RID}.bag.zip").exists()

    result = fetch_object(s3, request, tmp_path, PARTS)
    assert (result.parts_resumed, result.parts_downloaded) == (1, 3)
    assert _sha256(result.path) == hashlib.sha256(body).hexdigest() and not journal.exists()


def test_restore_still_in_progress_is_retryable_later_and_downloads_nothing(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, os.urandom(10_000), StorageClass="DEEP_ARCHIVE")
    s3.restore_object(Bucket=bucket, Key=KEY, VersionId=request.version_id,
                      RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}})
    hook = restore_ongoing(s3)
    with pytest.raises(RestoreInProgress, match=f"^{RID}: restore of .* still in progress") as caught:
        fetch_object(s3, request, tmp_path, PARTS)
    assert hook.seen == 1 and caught.value.retry_after and caught.value.retry_after >= 600
    assert list(tmp_path.iterdir()) == []


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


def test_connection_reset_mid_part_is_retried_and_the_download_is_intact(
    s3, bucket: str, proxy: ShapingProxy, tmp_path: Path,
) -> None:
    body = os.urandom(4 * 256 * 1024)
    request = _put(s3, bucket, body)
    proxy.cut_after_bytes, proxy.cut_connections = 100_000, 1  # inside the first part (one connection a request)
    via_proxy = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1")
    result = fetch_object(via_proxy, request, tmp_path, PARTS)
    assert proxy.stats().cuts == 1
    assert result.checksum_verified == "sha256" and _sha256(result.path) == hashlib.sha256(body).hexdigest()


def test_resets_on_every_connection_are_retryable_and_the_next_fetch_resumes(
    s3, bucket: str, proxy: ShapingProxy, tmp_path: Path,
) -> None:
    body = os.urandom(3 * 256 * 1024)
    request = _put(s3, bucket, body)
    proxy.cut_after_bytes = 100_000  # every connection dies before one part is through
    via_proxy = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                             config=Config(retries={"mode": "standard", "max_attempts": 1}))
    with pytest.raises(TransferError) as caught:
        fetch_object(via_proxy, request, tmp_path, PARTS)
    assert str(caught.value).startswith(f"{RID}: GET bytes=0-") and proxy.stats().cuts >= PARTS.part_attempts
    assert not (tmp_path / f"{RID}.bag.zip").exists()

    proxy.cut_after_bytes = None  # the network is back
    result = fetch_object(via_proxy, request, tmp_path, PARTS)
    assert _sha256(result.path) == hashlib.sha256(body).hexdigest()
