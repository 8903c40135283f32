"""Waiting for a restore is not failing: a work whose restore is in progress, or whose expired copy was re-requested,
waits as a new message and never spends the receive count that SQS would move it to the DLQ for.

Each wait hands the message on as a continuation (``contract.Continuation``: ``waits``, ``waiting_since``,
``wait_until``) delayed by ``restore.wait_interval`` — SQS delays a new message 900 s at most, so a continuation
received before its ``wait_until`` is hidden again for the rest (up to the 12 h visibility cap) without a HEAD. A new
message starts at receive count 0, and one wait costs it at most two receives. The work keeps its ledger row and
history (``restore_wait`` entries, no attempt counted). Past ``restore.max_wait_hours`` from the first wait the work
fails as ``restore_wait_exceeded``; the DLQ gets the message without the waiting state, so a redrive waits afresh.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import Continuation, RestoredWork, message_attributes
from onprem.finisher.errors import (
    FinisherError,
    PermanentError,
    ReceiptHandleInvalid,
    RestoreExpired,
    RestoreWaitExceeded,
    RetryableError,
)
from onprem.finisher.fetch.restore import reissue_restore
from onprem.finisher.ledger.store import Event, Ledger, Phase
from onprem.finisher.queue.sqs import MAX_VISIBILITY_S, ReceivedMessage, WorkQueue
from onprem.finisher.work.outcome import Outcome

logger = logging.getLogger(__name__)

#: SQS delays a message 15 minutes at most (DelaySeconds)
MAX_DELAY_S = 900
#: a continuation received this close to its ``wait_until`` is checked now rather than hidden again
EARLY_SLACK_S = 1.0

Fail = Callable[[WorkQueue, ReceivedMessage, RestoredWork, PermanentError], Outcome]


@dataclass(frozen=True)
class WaitPolicy:
    """From ``RestoreSettings``: how often a waiting restore is checked, how long at most, and how an expired copy
    is re-requested."""

    interval_s: int
    max_wait_hours: float
    tier: str
    days: int


@dataclass
class RestoreWaits:
    """The runner's waits for a restore: hand on, hide an early continuation, re-request an expired copy."""

    settings: WaitPolicy
    ledger: Ledger
    s3_client_for: Callable[[str], Any]

    def not_yet(self, queue: WorkQueue, message: ReceivedMessage, work: RestoredWork,
                now: datetime | None = None) -> Outcome | None:
        """``Outcome.WAITING`` when the message is a waiting continuation received before its ``wait_until``
        (hidden again for the rest, no HEAD); None when the restore is to be checked now."""
        waiting = work.continuation
        if waiting is None or waiting.wait_until is None:
            return None
        remaining = (waiting.wait_until - (now or datetime.now(UTC))).total_seconds()
        if remaining <= EARLY_SLACK_S:
            return None
        hidden = min(math.ceil(remaining), MAX_VISIBILITY_S)
        try:
            queue.set_visibility(message, hidden)
        except (ReceiptHandleInvalid, ClientError, BotoCoreError) as err:  # it comes back after its visibility
            logger.warning("%s: could not hide the waiting message: %s", work.work_rid, err,
                           extra={"work_rid": work.work_rid})
        logger.debug("%s: waiting for the restore until %s: hidden %d s", work.work_rid,
                     waiting.wait_until.isoformat(), hidden, extra={"work_rid": work.work_rid})
        return Outcome.WAITING

    def wait(self, queue: WorkQueue, message: ReceivedMessage, work: RestoredWork, err: RetryableError,
             fail: Fail, now: datetime | None = None) -> Outcome:
        """Hand the work on to wait ``wait_interval`` (an expired copy re-requested first), or ``fail`` it as
        RestoreWaitExceeded once it has waited ``max_wait_hours``."""
        now = now or datetime.now(UTC)
        rid, key = work.work_rid, work.idempotency_key
        previous = work.continuation
        since = previous.waiting_since if previous and previous.waiting_since else now
        waited = now - since
        if waited >= timedelta(hours=self.settings.max_wait_hours):
            exceeded = RestoreWaitExceeded(rid, f"{err.message}; waited {waited.total_seconds() / 3600:.1f} h since "
                                                f"{since.isoformat()} (restore_max_wait_hours "
                                                f"{self.settings.max_wait_hours:g}): re-request the restore")
            fresh = work.model_copy(update={"continuation": None})
            return fail(queue, replace(message, body=fresh.to_body()), work, exceeded)
        if isinstance(err, RestoreExpired):
            self._reissue(work)
        interval = self.settings.interval_s
        record = self.ledger.get(key)
        waits = (previous.waits if previous else 0) + 1
        continuation = Continuation(
            hop=previous.hop if previous else 0, phase=record.phase if record else Phase.RECEIVED,
            previous_message_id=message.message_id, handed_on_at=now, waits=waits, waiting_since=since,
            wait_until=now + timedelta(seconds=interval))
        following = work.model_copy(update={"continuation": continuation})
        try:
            new_id: str | None = queue.hand_on(message, following.to_body(), message_attributes(following),
                                               delay_s=min(interval, MAX_DELAY_S))
        except (ClientError, BotoCoreError) as send_err:  # the old message waits instead: one receive spent
            logger.warning("%s: could not hand the waiting work on (%s): message hidden %d s", rid, send_err,
                           min(interval, MAX_VISIBILITY_S), extra={"work_rid": rid})
            new_id = None
            try:
                queue.set_visibility(message, min(interval, MAX_VISIBILITY_S))
            except (ReceiptHandleInvalid, ClientError, BotoCoreError) as hide_err:
                logger.warning("%s: could not hide the message either: %s", rid, hide_err, extra={"work_rid": rid})
        self.ledger.note(key, Event.RESTORE_WAIT, cause=err.cause, waits=waits,
                         waiting_since=since.isoformat(), next_check=continuation.wait_until.isoformat()
                         if continuation.wait_until else None, new_message_id=new_id)
        logger.info("%s (%s): waiting for the restore, check %d in %d s (waiting since %s, at most %g h)", err,
                    err.cause, waits, interval, since.isoformat(), self.settings.max_wait_hours,
                    extra={"work_rid": rid, "cause": err.cause})
        return Outcome.WAITING

    def _reissue(self, work: RestoredWork) -> None:
        tier, days = self.settings.tier, self.settings.days
        try:
            outcome = reissue_restore(self.s3_client_for(work.region), work, tier, days)
        except FinisherError as err:  # the wait goes on: the next check finds it expired again and re-requests
            logger.error("%s: could not re-request the restore: %s", work.work_rid, err,
                         extra={"work_rid": work.work_rid})
            return
        self.ledger.record_restore_request(work_rid=work.work_rid, bucket=work.bucket, key=work.key, tier=tier,
                                           days=days, collection=work.collection, region=work.region,
                                           size=work.size, status="reissued")
        self.ledger.note(work.idempotency_key, Event.RESTORE_REISSUED, tier=tier, days=days, outcome=outcome)
