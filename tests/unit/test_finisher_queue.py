"""The SQS adapter on in-process moto: receive with attributes, release, DLQ with the reason, redrive, hand-on."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from onprem.finisher.errors import ReceiptHandleInvalid
from onprem.finisher.queue.sqs import WorkQueue


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkQueue]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        sqs.create_queue(QueueName="works")
        sqs.create_queue(QueueName="works-dlq")
        yield WorkQueue(sqs, "us-east-1", "works", "works-dlq")


def test_receive_reports_count_and_timestamps(queue: WorkQueue) -> None:
    queue.send("{}", {"work_rid": {"DataType": "String", "StringValue": "W1"}})
    [message] = queue.receive(10, 0, 30)
    assert message.receive_count == 1 and message.first_receive_at is not None and message.sent_at is not None
    assert message.message_attributes["work_rid"]["StringValue"] == "W1"


def test_release_makes_the_message_visible_again(queue: WorkQueue) -> None:
    queue.send("body")
    [message] = queue.receive(1, 0, 300)
    assert queue.receive(1, 0, 300) == []
    assert queue.release(message)
    [again] = queue.receive(1, 0, 300)
    assert again.body == "body" and again.receive_count == 2


def test_extending_a_deleted_message_is_receipt_handle_invalid(queue: WorkQueue) -> None:
    queue.send("body")
    [message] = queue.receive(1, 0, 300)
    queue.delete(message)
    with pytest.raises(ReceiptHandleInvalid):
        queue.set_visibility(message, 300)


def test_to_dlq_carries_the_reason_and_redrive_brings_the_body_back(queue: WorkQueue) -> None:
    queue.send("poison")
    [message] = queue.receive(1, 0, 300)
    queue.to_dlq(message, "bag_invalid", "W1: checksum mismatch")
    assert queue.depth()["dlq"] == 1
    [dead] = queue.receive(1, 0, 0, dlq=True)
    assert dead.body == "poison"
    assert dead.message_attributes["failure_cause"]["StringValue"] == "bag_invalid"
    assert dead.message_attributes["failure_message"]["StringValue"] == "W1: checksum mismatch"
    assert queue.redrive(wait_s=0) == 1
    [back] = queue.receive(1, 0, 30)
    assert back.body == "poison" and "failure_cause" not in back.message_attributes


def test_hand_on_sends_the_continuation_and_deletes_the_old_message(queue: WorkQueue) -> None:
    queue.send("old")
    [message] = queue.receive(1, 0, 300)
    queue.hand_on(message, "new", {})
    queue.release(message)  # no longer exists: harmless
    [received] = queue.receive(10, 0, 300)
    assert received.body == "new"
    assert queue.receive(10, 0, 300) == []
