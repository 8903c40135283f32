"""The alarm's gauge and the early continuation, on a real SQLite ledger and an in-process moto SQS queue."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from contract import Continuation, RestoredWork
from onprem.finisher.ledger.store import Ledger, Phase
from onprem.finisher.metrics import RESTORE_EXPIRY_METRIC, LogMetrics
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.expiry import ExpiryGauge, hours_to_earliest_expiry
from onprem.finisher.work.outcome import Outcome
from onprem.finisher.work.waiting import RestoreWaits, WaitPolicy

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
BUCKET = "glacier.staging.nlm.dev.bdrc.org"


def _work(rid: str, expiry: datetime | None, continuation: Continuation | None = None) -> RestoredWork:
    work = RestoredWork.build(collection="NLM", bucket=BUCKET, key=f"Archive0/00/{rid}/{rid}.bag.zip",
                              region="us-east-1", size=10, etag="0" * 32, event_time=NOW,
                              source_event_id=f"event-{rid}", version_id=f"v-{rid}", restore_expiry=expiry)
    return work.model_copy(update={"continuation": continuation}) if continuation else work


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    made = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield made
    made.close()


def test_the_gauge_is_the_earliest_expiry_ahead_of_a_work_still_on_its_way(ledger: Ledger) -> None:
    works = {rid: _work(rid, NOW + timedelta(hours=hours)) for rid, hours in
             (("W1A00", 5), ("W1B00", 30), ("W1C00", 2), ("W1D00", 1), ("W1E00", -3))}
    for work in works.values():
        ledger.register(work, work.to_body())
    ledger.advance(works["W1C00"].idempotency_key, Phase.SYNCED)  # synced: its copy no longer matters
    ledger.fail(works["W1D00"].idempotency_key, "bag_invalid", "W1D00: bad", permanent=True)  # the DLQ's alarm
    # W1E00's copy is already gone (the re-request's business): W1A00 is the earliest ahead
    assert hours_to_earliest_expiry(ledger, NOW) == (pytest.approx(5.0), "W1A00")


def test_nothing_is_published_without_a_work_to_watch_and_at_most_once_per_interval(ledger: Ledger) -> None:
    metrics = LogMetrics()
    gauge = ExpiryGauge(ledger, metrics, interval_s=3600)
    assert gauge.tick() is None and metrics.points == []
    soon = _work("W1A00", datetime.now(UTC) + timedelta(hours=10))
    ledger.register(soon, soon.to_body())
    assert ExpiryGauge(ledger, metrics, interval_s=3600).tick() == pytest.approx(10.0, abs=0.01)
    assert gauge.tick() is None  # this gauge published (nothing) within the hour: not again
    assert [name for name, _, _ in metrics.points] == [RESTORE_EXPIRY_METRIC]


@mock_aws
def test_a_waiting_continuation_received_early_is_hidden_for_the_rest_of_its_wait(ledger: Ledger) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.create_queue(QueueName="works")
    sqs.create_queue(QueueName="works-dlq")
    queue = WorkQueue(sqs, "us-east-1", "works", "works-dlq")
    waits = RestoreWaits(WaitPolicy(3600, 52, "Bulk", 3), ledger, s3_client_for=lambda region: None)
    waiting = Continuation(hop=0, phase="received", handed_on_at=NOW, waits=1, waiting_since=NOW,
                           wait_until=NOW + timedelta(hours=1))
    work = _work("W1A00", None, waiting)
    queue.send(work.to_body())
    [message] = queue.receive(1, 0, 30)
    assert waits.not_yet(queue, message, work, now=NOW + timedelta(minutes=15)) == Outcome.WAITING
    attributes = sqs.get_queue_attributes(QueueUrl=queue.queue_url, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "0", "1")
    assert waits.not_yet(queue, message, work, now=NOW + timedelta(hours=1)) is None  # due: checked now
    assert waits.not_yet(queue, message, _work("W1A00", None), now=NOW) is None  # not waiting at all
