"""SQS adapter of one region: receive, extend, release, delete, continuation, DLQ and redrive.

Only this module speaks SQS; the worker sees ``ReceivedMessage`` and named outcomes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onprem.finisher.errors import ReceiptHandleInvalid

logger = logging.getLogger(__name__)

#: SQS refuses a visibility timeout beyond 12 h
MAX_VISIBILITY_S = 43200
_INVALID_HANDLE_CODES = frozenset({
    "ReceiptHandleIsInvalid", "InvalidParameterValue", "AWS.SimpleQueueService.MessageNotInflight",
    "MessageNotInflight",
})


@dataclass(frozen=True)
class ReceivedMessage:
    region: str
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    first_receive_at: datetime | None
    sent_at: datetime | None
    message_attributes: dict[str, Any] = field(default_factory=dict)
    #: ``time.monotonic()`` when this process received it (the 12 h visibility cap counts from a receive)
    received_monotonic: float = field(default_factory=time.monotonic)


#: what ``to_dlq`` adds to a message and a redrive takes off again
_FAILURE_ATTRIBUTES = frozenset({"failure_cause", "failure_message", "failed_at", "receive_count"})


def _epoch_ms(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None


def _string_attributes(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"DataType": "String", "StringValue": value[:1000] or "-"} for name, value in attributes.items()}


class WorkQueue:
    """The work queue and DLQ of one region."""

    def __init__(self, sqs_client: Any, region: str, queue_name: str, dlq_name: str) -> None:
        self.sqs, self.region, self.queue_name, self.dlq_name = sqs_client, region, queue_name, dlq_name
        self._queue_url: str | None = None
        self._dlq_url: str | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self.sqs.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        return self._queue_url

    @property
    def dlq_url(self) -> str:
        if self._dlq_url is None:
            self._dlq_url = self.sqs.get_queue_url(QueueName=self.dlq_name)["QueueUrl"]
        return self._dlq_url

    def receive(self, max_messages: int, wait_s: int, visibility_s: int, *, dlq: bool = False) -> list[ReceivedMessage]:
        response = self.sqs.receive_message(
            QueueUrl=self.dlq_url if dlq else self.queue_url, MaxNumberOfMessages=max(1, min(max_messages, 10)),
            WaitTimeSeconds=wait_s, VisibilityTimeout=visibility_s, AttributeNames=["All"],
            MessageAttributeNames=["All"])
        messages = []
        for raw in response.get("Messages", []):
            attributes = raw.get("Attributes", {})
            messages.append(ReceivedMessage(
                region=self.region, message_id=raw["MessageId"], receipt_handle=raw["ReceiptHandle"],
                body=raw["Body"], receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
                first_receive_at=_epoch_ms(attributes.get("ApproximateFirstReceiveTimestamp")),
                sent_at=_epoch_ms(attributes.get("SentTimestamp")),
                message_attributes=raw.get("MessageAttributes", {})))
        return messages

    def set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        """Extend (heartbeat), delay (backoff) or release (0); ReceiptHandleInvalid when it is not ours."""
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=message.receipt_handle,
                                               VisibilityTimeout=max(0, min(int(seconds), MAX_VISIBILITY_S)))
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in _INVALID_HANDLE_CODES:
                raise ReceiptHandleInvalid(f"{self.queue_name}: message {message.message_id}: {code}") from err
            raise

    def release(self, message: ReceivedMessage) -> bool:
        """Make the message visible again now; False when it was no longer ours (harmless)."""
        try:
            self.set_visibility(message, 0)
            return True
        except (ReceiptHandleInvalid, ClientError, BotoCoreError) as err:
            logger.warning("could not release message %s: %s", message.message_id, err)
            return False

    def delete(self, message: ReceivedMessage) -> None:
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message.receipt_handle)

    def send(self, body: str, attributes: dict[str, dict[str, str]] | None = None, *, delay_s: int = 0) -> str:
        response = self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body,
                                         MessageAttributes=attributes or {}, DelaySeconds=max(0, min(delay_s, 900)))
        return str(response["MessageId"])

    def hand_on(self, message: ReceivedMessage, new_body: str, attributes: dict[str, dict[str, str]], *,
                delay_s: int = 0) -> str:
        """Send the continuation first (hidden ``delay_s``, at most SQS's 900 s), then delete the old message: a
        crash between leaves a duplicate, never a lost work (the ledger dedups it)."""
        new_id = self.send(new_body, attributes, delay_s=delay_s)
        self.delete(message)
        return new_id

    def to_dlq(self, message: ReceivedMessage, cause: str, reason: str) -> str:
        """Send the body to the DLQ with the reason and the work queue's receive count as attributes, then delete
        it from the work queue."""
        attributes = {name: value for name, value in message.message_attributes.items()
                      if name not in _FAILURE_ATTRIBUTES}
        attributes.update(_string_attributes({"failure_cause": cause, "failure_message": reason,
                                              "failed_at": datetime.now(UTC).isoformat(),
                                              "receive_count": str(message.receive_count)}))
        response = self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=message.body,
                                         MessageAttributes=attributes)
        self.delete(message)
        return str(response["MessageId"])

    def redrive(self, *, limit: int | None = None, wait_s: int = 1) -> int:
        """Move DLQ messages back to the work queue (same body, failure attributes dropped); returns how many."""
        moved = 0
        while limit is None or moved < limit:
            batch = self.receive(10 if limit is None else min(10, limit - moved), wait_s, 60, dlq=True)
            if not batch:
                break
            for message in batch:
                self.move_from_dlq(message)
                moved += 1
        return moved

    def peek_dlq(self, *, hold_s: int = 60, wait_s: int = 1) -> list[ReceivedMessage]:
        """Every message of the DLQ, each received once and held invisible for ``hold_s`` so the listing reaches
        the end; ``move_from_dlq`` or ``release_dlq`` ends the hold (a message left alone reappears after it)."""
        seen: dict[str, ReceivedMessage] = {}
        while batch := self.receive(10, wait_s, hold_s, dlq=True):
            seen.update((message.message_id, message) for message in batch)
        return list(seen.values())

    def move_from_dlq(self, message: ReceivedMessage) -> str:
        """Send a DLQ message's body back to the work queue (failure attributes dropped), then delete it."""
        attributes = {name: value for name, value in message.message_attributes.items()
                      if name not in _FAILURE_ATTRIBUTES}
        new_id = self.send(message.body, attributes)
        self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=message.receipt_handle)
        return new_id

    def release_dlq(self, messages: list[ReceivedMessage]) -> None:
        """Make held DLQ messages visible again now."""
        for message in messages:
            self.sqs.change_message_visibility(QueueUrl=self.dlq_url, ReceiptHandle=message.receipt_handle,
                                               VisibilityTimeout=0)

    def depth(self) -> dict[str, int]:
        """Approximate visible and in-flight counts of the work queue and the DLQ."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        work = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        dead = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=names[:1])["Attributes"]
        return {"visible": int(work.get(names[0], 0)), "in_flight": int(work.get(names[1], 0)),
                "delayed": int(work.get(names[2], 0)), "dlq": int(dead.get(names[0], 0))}
