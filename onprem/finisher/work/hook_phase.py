"""The post-sync hook as its own phase: run after the sync, retried alone, never a reason to sync again.

A work is ``synced`` once its archive copy is in place, whatever its hook does. The hook of each synced work
(``work_synced`` in the history, its archive path and sync log) runs once the work is synced; ``hook_ok`` or
``hook_failed`` (with the error and the hook's own attempt number) goes to the history, ``hook_failed`` also to
the row's ``last_cause`` (``finisher status``) and to the failure metric. A failed hook keeps the message: it comes
back after the hook's own backoff (``backoff_base`` doubling per hook failure, capped at ``backoff_max``) and only
the hooks still pending run. On the message's last receive it goes to the DLQ with cause ``hook_failed`` instead
(``finisher redrive`` brings it back: the hook runs alone again).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from onprem.finisher.errors import HookFailed, ReceiptHandleInvalid
from onprem.finisher.ledger.store import Event, Ledger, Phase, WorkRecord
from onprem.finisher.metrics import Metrics
from onprem.finisher.progress import NullProgress
from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue
from onprem.finisher.work.cancel import CancelToken
from onprem.finisher.work.history import backoff_seconds
from onprem.finisher.work.outcome import Outcome
from onprem.finisher.work.stages import StageContext, Stages

__all__ = ["BackoffKnobs", "HookPhase", "PendingHook", "hook_failures", "pending_hooks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingHook:
    """A synced work whose hook has not succeeded yet."""

    work_rid: str
    archive_path: Path
    log_path: Path | None


def pending_hooks(record: WorkRecord | None) -> list[PendingHook]:
    """The synced works of ``record`` (its ``work_synced`` entries) without a ``hook_ok`` yet, in sync order."""
    history = record.history if record else []
    done = {e.get("work_rid") for e in history if e.get("event") == Event.HOOK_OK}
    pending: dict[str, PendingHook] = {}
    for entry in history:
        rid, archive = entry.get("work_rid"), entry.get("archive_path")
        if entry.get("event") == Event.WORK_SYNCED and rid not in done and archive:
            log = entry.get("log")
            pending[rid] = PendingHook(rid, Path(archive), Path(log) if log else None)
    return list(pending.values())


def hook_failures(record: WorkRecord | None) -> int:
    """How many times the hooks of this work have failed (the hook's own attempt count, not the work's)."""
    return sum(1 for e in (record.history if record else []) if e.get("event") == Event.HOOK_FAILED)


class BackoffKnobs(Protocol):
    """The worker's backoff settings (``WorkerSettings``): a failed hook's delay doubles from the base to the cap."""

    backoff_base: int
    backoff_max: int


@dataclass
class HookPhase:
    """The hooks of one finisher's works: due, run, recorded, retried alone."""

    stages: Stages
    ledger: Ledger
    metrics: Metrics
    backoff: BackoffKnobs
    max_receive_count: int

    def due(self, record: WorkRecord | None) -> bool:
        """A synced work whose hook has not succeeded: its message runs the hook alone."""
        return (record is not None and record.phase == Phase.SYNCED and self.stages.hook is not None
                and bool(pending_hooks(record)))

    def run(self, queue: WorkQueue, message: ReceivedMessage, idempotency_key: str,
            cancel: CancelToken) -> Outcome | None:
        """Run every pending hook of the synced work; None when all succeeded (or there is no hook), else how the
        message ended (back after the hook's backoff, or to the DLQ). WorkInterrupted when a stop ended a hook
        (nothing recorded: it runs again)."""
        if self.stages.hook is None:
            return None
        record = self.ledger.get(idempotency_key)
        ctx = StageContext(cancel, lambda _label: NullProgress())
        for pending in pending_hooks(record):
            cancel.check()
            started = time.monotonic()
            try:
                self.stages.hook(pending.work_rid, pending.archive_path, pending.log_path, ctx)
            except HookFailed as err:
                self.ledger.note(idempotency_key, Event.HOOK_FAILED, work_rid=pending.work_rid, error=str(err),
                                 attempt=hook_failures(record) + 1)
                self.metrics.work_failed(err.cause)
                return self._retry(queue, message, pending.work_rid, idempotency_key, err)
            self.metrics.phase_duration("hook", time.monotonic() - started)
            self.ledger.note(idempotency_key, Event.HOOK_OK, work_rid=pending.work_rid)
        return None

    def _retry(self, queue: WorkQueue, message: ReceivedMessage, work_rid: str, idempotency_key: str,
               err: HookFailed) -> Outcome:
        """The message back after the hook's backoff, or to the DLQ on its last receive."""
        failures = hook_failures(self.ledger.get(idempotency_key))
        limit = self.max_receive_count
        if message.receive_count >= limit:
            reason = (f"{err}; the work is synced, its hook failed {failures} time(s) (receive "
                      f"{message.receive_count} of maxReceiveCount {limit}): finisher redrive runs the hook alone")
            queue.to_dlq(message, err.cause, reason)
            logger.error("%s (%s): moved to the DLQ", reason, err.cause,
                         extra={"work_rid": work_rid, "cause": err.cause})
            return Outcome.FAILED
        delay = backoff_seconds(failures, self.backoff.backoff_base, self.backoff.backoff_max)
        try:
            queue.set_visibility(message, delay)
        except (ReceiptHandleInvalid, ClientError, BotoCoreError) as visibility_err:
            logger.warning("%s: could not set the message's visibility: %s", work_rid, visibility_err,
                           extra={"work_rid": work_rid})
        logger.warning("%s (%s): the work stays synced; hook attempt %d, again in %d s", err, err.cause, failures,
                       delay, extra={"work_rid": work_rid, "cause": err.cause})
        return Outcome.HOOK_RETRY
