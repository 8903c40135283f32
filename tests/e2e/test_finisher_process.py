"""The finisher as a separate process against a loopback moto server: SIGTERM mid-work, restart, two finishers.

The subprocesses run the real stages slowed down by ``test_finisher_process_stages.slow_stages`` (that module's
``main``: the finisher's CLI given those stages).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from contract import archive_relpath_for_rid
from harness.bags import make_bdrc_bag_zip
from onprem.finisher.ledger.store import Ledger
from tests.integration.worker_support import BUCKET, DLQ, QUEUE, REGION, environment, stage_object

REPO_ROOT = Path(__file__).resolve().parents[2]
RID = "W1NLM4700"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Clients:
    """Just enough of AwsClients for stage_object, on the server."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(self, service: str, region: str) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint)

    def s3(self, region: str) -> Any:
        return self.client("s3", region)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Clients, dict[str, str]]]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    clients = Clients(endpoint)
    s3 = clients.s3(REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    sqs = clients.client("sqs", REGION)
    sqs.create_queue(QueueName=DLQ)
    sqs.create_queue(QueueName=QUEUE)
    env_file = tmp_path / "env.yaml"
    env_file.write_text(yaml.safe_dump(environment(tmp_path).model_dump(mode="json")))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FINISHER_", "AWS_", "BDRC_"))}
    env.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "BDRC_ENV_FILE": str(env_file), "PYTHONPATH": str(REPO_ROOT),
        "FINISHER_WAIT_TIME_SECONDS": "1", "FINISHER_VISIBILITY_TIMEOUT": "30", "FINISHER_MIN_FREE_BYTES": "0",
        "FINISHER_LOG_FORMAT": "json", "FINISHER_LEASE_BUSY_DELAY": "1", "FINISHER_DRAIN_IDLE_LIMIT": "10",
        "PYTHONUNBUFFERED": "1",
    })
    yield clients, env
    moto.stop()


def finisher(env: dict[str, str], *args: str, **extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.e2e.test_finisher_process_stages", *args]
    return subprocess.Popen(command, env={**env, **extra}, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate: Callable[[], Any], deadline_s: float, what: str) -> Any:
    deadline = time.monotonic() + deadline_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def depth(clients: Clients) -> dict[str, int]:
    sqs = clients.client("sqs", REGION)
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {"visible": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"])}


def send_work(clients: Clients, tmp_path: Path, copies: int = 1) -> Any:
    work = stage_object(clients, make_bdrc_bag_zip(tmp_path / "bags", rids=[RID]), RID)  # type: ignore[arg-type]
    sqs = clients.client("sqs", REGION)
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for n in range(copies):
        sqs.send_message(QueueUrl=url, MessageBody=work.model_copy(update={"source_event_id": f"e{n}"}).to_body())
    return work


def stage_log(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "state" / "stage-log.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.is_file() else []


def test_sigterm_mid_work_releases_the_message_and_a_restart_finishes_it(
        tmp_path: Path, server: tuple[Clients, dict[str, str]]) -> None:
    clients, env = server
    work = send_work(clients, tmp_path)
    process = finisher(env, "run", FINISHER_TEST_SLOW_S="60", FINISHER_GRACE_PERIOD="0.5")
    try:
        wait_for(lambda: any(e[0] == "start" for e in stage_log(tmp_path)), 30, "the fetch + de-bag to start")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert depth(clients) == {"visible": 1, "in_flight": 0}
    ledger = Ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite'}")
    record = ledger.get(work.idempotency_key)
    # stopped in its fetch + de-bag: nothing is recorded downloaded before it is de-bagged
    assert record is not None and record.phase == "restore_completed" and record.lease_owner is None
    assert any(e["event"] == "released" and e["reason"] == "shutdown" for e in record.history)
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any("released in phase restore_completed" in e["message"] and e.get("work_rid") == RID for e in events)

    restart = finisher(env, "run", "--drain")
    _, stderr = restart.communicate(timeout=60)
    assert restart.returncode == 0, stderr
    assert (tmp_path / "archive" / archive_relpath_for_rid(RID)).is_dir()
    assert depth(clients) == {"visible": 0, "in_flight": 0}
    record = ledger.get(work.idempotency_key)
    assert record is not None and record.phase == "synced"


def test_two_finisher_processes_never_work_on_the_same_work_at_once(
        tmp_path: Path, server: tuple[Clients, dict[str, str]]) -> None:
    clients, env = server
    work = send_work(clients, tmp_path, copies=2)
    processes = [finisher(env, "run", "--drain", FINISHER_TEST_SLOW_S="1.5", FINISHER_CONCURRENCY="1")
                 for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    log = stage_log(tmp_path)
    starts = [float(e[3]) for e in log if e[0] == "start"]
    ends = [float(e[3]) for e in log if e[0] == "end"]
    assert len(starts) == 1 and len(ends) == 1  # one de-bag: the other message was a duplicate or waited
    record = Ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite'}").get(work.idempotency_key)
    assert record is not None and record.phase == "synced"
    assert [e["event"] for e in record.history].count("synced") == 1, record.history
    assert [e["event"] for e in record.history].count("duplicate") == 1, json.dumps(record.history)
    assert depth(clients) == {"visible": 0, "in_flight": 0}


def test_a_second_signal_exits_at_once_leaving_the_message_for_redelivery(
        tmp_path: Path, server: tuple[Clients, dict[str, str]]) -> None:
    clients, env = server
    work = send_work(clients, tmp_path)
    process = finisher(env, "run", FINISHER_TEST_SLOW_S="60", FINISHER_GRACE_PERIOD="60")
    try:
        wait_for(lambda: any(e[0] == "start" for e in stage_log(tmp_path)), 30, "the fetch + de-bag to start")
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)  # well inside the 60 s grace period: it did not wait for it
    finally:
        process.kill()
    assert process.returncode == 1
    assert depth(clients) == {"visible": 0, "in_flight": 1}  # not deleted: back after its visibility timeout
    record = Ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite'}").get(work.idempotency_key)
    assert record is not None and record.phase == "restore_completed"  # stopped in its fetch + de-bag
