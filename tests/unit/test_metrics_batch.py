"""The metrics batcher: a work only appends, a background thread sends in batches of at most 1000, a full buffer
and a failing CloudWatch lose datums (counted, logged once) and never fail the caller. Real threads, a moto
server's CloudWatch read back with list_metrics and get_metric_data."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from onprem.finisher.metrics import LogMetrics, NullMetrics
from onprem.finisher.metrics_batch import MAX_DATUMS_PER_CALL, BatchedMetrics
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.metered import RunMetrics
from onprem.finisher.work.runtime import make_metrics
from onprem.finisher.work.settings import load_settings
from onprem.finisher.work.worker import PassTotals

REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def cloudwatch(endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    return boto3.client("cloudwatch", region_name=REGION, endpoint_url=endpoint)


def namespace_for(request: pytest.FixtureRequest) -> str:
    return f"BDRC/Restore/test/{request.node.name}"  # the server lives for the module: one namespace per test


def statistic(client: Any, namespace: str, name: str, stat: str, **dimensions: str) -> float:
    """The metric's ``stat`` over the last hour, from the server (get_metric_data)."""
    now = datetime.now(UTC)
    response = client.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {
            "Namespace": namespace, "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]}, "Period": 3600, "Stat": stat}}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5))
    values = response["MetricDataResults"][0]["Values"]  # one per hour bucket the window touches
    return float({"Minimum": min, "Maximum": max}.get(stat, sum)(values))


def test_counts_from_many_threads_go_out_summed_on_the_metrics_thread(cloudwatch: Any,
                                                                     request: pytest.FixtureRequest) -> None:
    namespace = namespace_for(request)
    metrics = BatchedMetrics(cloudwatch, namespace, interval_s=0.2)
    metrics.start()

    def download() -> None:
        for _ in range(250):
            metrics.bytes_downloaded(1000)

    threads = [threading.Thread(target=download) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics.work_failed("checksum_mismatch")
    deadline = time.monotonic() + 10
    while statistic(cloudwatch, namespace, "BytesDownloaded", "Sum") < 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statistic(cloudwatch, namespace, "BytesDownloaded", "Sum") == 1_000_000  # sent before any close
    metrics.close()
    # 1,000 chunks went out as a handful of datums: one sum per interval
    assert metrics.sent <= 10 and metrics.dropped == 0
    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    assert {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in listed} == {
        ("BytesDownloaded", ()), ("WorkFailures", (("cause", "checksum_mismatch"),))}
    assert statistic(cloudwatch, namespace, "WorkFailures", "Sum", cause="checksum_mismatch") == 1


def test_samples_go_out_at_most_1000_to_a_call(cloudwatch: Any, request: pytest.FixtureRequest) -> None:
    namespace = namespace_for(request)
    metrics = BatchedMetrics(cloudwatch, namespace, interval_s=60)
    for i in range(2 * MAX_DATUMS_PER_CALL + 500):
        metrics.phase_duration("sync", float(i % 7))
    metrics.close()  # never started: the last round runs here
    assert (metrics.calls, metrics.sent, metrics.dropped) == (3, 2500, 0)
    assert statistic(cloudwatch, namespace, "PhaseDuration", "SampleCount", phase="sync") == 2500
    assert statistic(cloudwatch, namespace, "PhaseDuration", "Maximum", phase="sync") == 6


def test_a_full_buffer_drops_counts_and_says_so_once(cloudwatch: Any, request: pytest.FixtureRequest,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    namespace = namespace_for(request)
    metrics = BatchedMetrics(cloudwatch, namespace, interval_s=60, capacity=5)
    for i in range(20):
        metrics.work_failed(f"cause_{i}")
        metrics.work_failed(f"cause_{i}")  # the same key adds to its sum: never dropped once it is in
    with caplog.at_level(logging.WARNING, logger="onprem.finisher.metrics_batch"):
        metrics.close()
    assert (metrics.sent, metrics.dropped) == (6, 30)  # 5 sums + MetricsDropped; 15 causes, twice each, had no room
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["metrics: 30 datum(s) lost in the last 60 s (buffer full at 5); the finisher goes on"]
    assert statistic(cloudwatch, namespace, "MetricsDropped", "Sum") == 30
    assert statistic(cloudwatch, namespace, "WorkFailures", "Sum", cause="cause_0") == 2


def test_a_cloudwatch_that_hangs_never_holds_a_work_and_its_datums_are_counted(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        client = boto3.client("cloudwatch", region_name=REGION, endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
                              config=Config(connect_timeout=0.3, read_timeout=0.3,
                                            retries={"total_max_attempts": 1, "mode": "standard"}))
        metrics = BatchedMetrics(client, "BDRC/Restore/test", interval_s=0.05)
        metrics.work_synced()
        metrics.start()
        time.sleep(0.1)  # the thread is inside its send now, waiting on the silent server
        started = time.monotonic()
        for _ in range(500):
            metrics.bytes_downloaded(4096)
            metrics.phase_duration("download", 0.1)
        appended = time.monotonic() - started
        with caplog.at_level(logging.WARNING, logger="onprem.finisher.metrics_batch"):
            metrics.close(timeout_s=5)
    assert appended < 0.2, f"500 pairs of datums took {appended:.3f} s to record: the work waited on CloudWatch"
    assert metrics.sent == 0 and metrics.dropped >= 502  # the count, 500 durations, the bytes' sum
    assert any("lost" in r.getMessage() and "CloudWatch" in r.getMessage() for r in caplog.records)


def test_the_loop_s_totals_go_out_as_differences_and_a_stuck_loop_has_no_heartbeat() -> None:
    metrics = LogMetrics()
    run = RunMetrics(metrics, host="archive-host", stale_after_s=0.1)
    run.started([WorkQueue(None, region, "works", "works-dlq") for region in ("us-east-1", "ap-northeast-2")])
    run.passed(PassTotals(hidden=3, waiting=1, renewed=0))
    run.passed(PassTotals(hidden=5, waiting=1, renewed=2))
    assert metrics.total("MessagesHidden", reason="backlog") == 5
    assert metrics.total("MessagesHidden", reason="restore_wait") == 1
    assert metrics.total("RestoresRenewed") == 2
    run.tick()
    assert [(d, v) for n, d, v in metrics.points if n == "FinisherHeartbeat"] == [
        ({"region": "ap-northeast-2"}, 1), ({"region": "us-east-1"}, 1), ({"host": "archive-host"}, 1)]
    time.sleep(0.15)  # the loop has not passed since: stuck, so the alarm must hear nothing
    run.tick()
    assert metrics.total("FinisherHeartbeat") == 3


def test_metrics_are_on_against_aws_off_with_an_endpoint_and_the_variable_decides(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "FINISHER_METRICS", "FINISHER_SETTINGS_FILE", "FINISHER_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    against_aws = load_settings(env_name="prod")
    assert against_aws.metrics and against_aws.endpoint_url is None
    metrics = make_metrics(against_aws, AwsClients())
    assert isinstance(metrics, BatchedMetrics) and (metrics.interval_s, metrics.capacity) == (60.0, 10_000)
    assert metrics.namespace == against_aws.environment.monitoring.namespace
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")  # the demo's moto
    demo = load_settings(env_name="dev")
    assert not demo.metrics and isinstance(make_metrics(demo, AwsClients(demo.endpoint_url)), NullMetrics)
    monkeypatch.setenv("FINISHER_METRICS", "true")
    assert load_settings(env_name="dev").metrics
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("FINISHER_METRICS", "false")
    assert not load_settings(env_name="prod").metrics
