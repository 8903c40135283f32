"""The DLQ at hand: what each dead message is (work, cause, message, receives, age), and redriving a chosen few.

Reading a DLQ means receiving its messages: each is held invisible while the listing runs and released at its end
(``WorkQueue.peek_dlq``). The receive count shown is the work queue's when the finisher moved the message (its
``receive_count`` attribute); for a message SQS moved itself, the DLQ's count less this listing's receive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contract import ContractError, parse_message
from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue


@dataclass(frozen=True)
class DeadMessage:
    """One DLQ message as the operator reads it."""

    region: str
    message_id: str
    work_rid: str | None
    cause: str | None
    failure_message: str | None
    receive_count: int
    failed_at: datetime | None
    body: str

    def age(self, now: datetime) -> timedelta | None:
        return now - self.failed_at if self.failed_at else None

    def as_json(self, now: datetime) -> dict[str, Any]:
        age = self.age(now)
        return {"region": self.region, "message_id": self.message_id, "work_rid": self.work_rid,
                "cause": self.cause, "failure_message": self.failure_message, "receive_count": self.receive_count,
                "failed_at": self.failed_at.isoformat() if self.failed_at else None,
                "age_s": round(age.total_seconds()) if age else None}


def _attribute(message: ReceivedMessage, name: str) -> str | None:
    value = message.message_attributes.get(name, {}).get("StringValue")
    return None if value in (None, "-") else str(value)


def dead_message(message: ReceivedMessage) -> DeadMessage:
    """``message`` read: its work from the body (None when the body is not a RestoredWork), its failure from the
    attributes the finisher sets (``failed_at``, else when SQS received it first)."""
    try:
        rid: str | None = parse_message(message.body).work_rid
    except (ContractError, ValueError):
        rid = None
    failed = _attribute(message, "failed_at")
    failed_at = datetime.fromisoformat(failed) if failed else (message.sent_at or message.first_receive_at)
    return DeadMessage(message.region, message.message_id, rid, _attribute(message, "failure_cause"),
                       _attribute(message, "failure_message"), _receives(message), failed_at,
                       message.body)


def _receives(message: ReceivedMessage) -> int:
    recorded = _attribute(message, "receive_count")
    return int(recorded) if recorded and recorded.isdigit() else max(0, message.receive_count - 1)


@dataclass(frozen=True)
class DeadFilter:
    """Which dead messages a redrive takes: every given condition must hold (none given: all)."""

    causes: frozenset[str] = frozenset()
    rids: frozenset[str] = frozenset()
    older_than: timedelta | None = None

    def takes(self, dead: DeadMessage, now: datetime) -> bool:
        age = dead.age(now)
        return ((not self.causes or dead.cause in self.causes)
                and (not self.rids or dead.work_rid in self.rids)
                and (self.older_than is None or (age is not None and age >= self.older_than)))


def list_dead(queues: Iterable[WorkQueue]) -> list[DeadMessage]:
    """Every DLQ message of ``queues``, oldest failure first; each released again at the end."""
    found: list[DeadMessage] = []
    for queue in queues:
        held = queue.peek_dlq()
        try:
            found += [dead_message(message) for message in held]
        finally:
            queue.release_dlq(held)
    return sorted(found, key=lambda d: d.failed_at or datetime.min.replace(tzinfo=UTC))


def redrive_dead(queues: Iterable[WorkQueue], chosen: DeadFilter,
                 now: datetime | None = None) -> list[DeadMessage]:
    """Move the DLQ messages ``chosen`` takes back to their work queue; the others are released untouched."""
    now = now or datetime.now(UTC)
    moved: list[DeadMessage] = []
    for queue in queues:
        held = queue.peek_dlq()
        gone: set[str] = set()
        try:
            for message in held:
                dead = dead_message(message)
                if chosen.takes(dead, now):
                    queue.move_from_dlq(message)
                    gone.add(message.message_id)
                    moved.append(dead)
        finally:  # whatever was not moved is visible again at once, even when a move failed
            queue.release_dlq([message for message in held if message.message_id not in gone])
    return moved
