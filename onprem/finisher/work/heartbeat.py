"""Keeps a message invisible and the ledger lease alive while its work runs; stops the work when either is lost.

Two beats, every ``visibility * fraction`` seconds, each on its own thread: one renews the lease, the other
extends the message's visibility. They never wait for each other: an extension that spends botocore's retries
(SQS throttling, a slow link) must not delay the renewal past the lease's TTL, or another finisher would take a
work that is still running here. A refused extension (receipt handle invalid) or a lease taken by someone else
cancels the work (``lease_lost``); a transient extension failure does not (the lease keeps other finishers off the
work meanwhile). SQS caps a message's visibility at 12 h from its receive: ``handoff_margin`` before that, the
work is asked to stop at its next checkpoint (``handoff``) so the worker can hand it on as a continuation message.

The lease lasts ``LEASE_SHARE`` of the visibility (``lease_ttl``), and the visibility is extended at once after the
lease is taken, then at the same fixed beats as the renewals (``_ticks``): the lease ends before SQS shows the
message again. An attempt killed holding it (kill -9, a host gone) then never turns the next receive into "another
finisher holds this work", a receive that counts toward the DLQ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.exc import SQLAlchemyError

from onprem.finisher.errors import InterruptReason, LedgerUnavailable, ReceiptHandleInvalid
from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue
from onprem.finisher.work.cancel import CancelToken

logger = logging.getLogger(__name__)


#: a lease's TTL as a share of the message's visibility (``WorkerSettings.heartbeat_fraction`` stays below it)
LEASE_SHARE = 0.9


def lease_ttl(visibility_s: float) -> float:
    """The TTL of a lease taken or renewed along with a message visible again in ``visibility_s``."""
    return visibility_s * LEASE_SHARE


class LeaseKeeper(Protocol):
    """What the heartbeat needs of the ledger (``ledger.store.Ledger``): renew a work's lease."""

    def renew_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool: ...


@dataclass(frozen=True)
class HeldLease:
    """The lease one attempt holds on a work: renewed by the heartbeat under ``owner``."""

    ledger: LeaseKeeper
    idempotency_key: str
    owner: str


@dataclass(frozen=True)
class BeatTiming:
    """How often the heartbeat beats and how far it extends (``WorkerSettings``: visibility_timeout,
    heartbeat_fraction, max_visibility, handoff_margin)."""

    visibility_s: int
    fraction: float
    max_visibility_s: int
    handoff_margin_s: int


class Heartbeat:
    def __init__(self, queue: WorkQueue, message: ReceivedMessage, lease: HeldLease, token: CancelToken,
                 timing: BeatTiming, clock: Callable[[], float] = time.monotonic) -> None:
        self.queue, self.message, self.lease, self.token, self.clock = queue, message, lease, token, clock
        self.visibility_s, self.max_visibility_s = timing.visibility_s, timing.max_visibility_s
        self.handoff_margin_s = timing.handoff_margin_s
        self.interval = max(timing.visibility_s * timing.fraction, 0.05)
        self._stop = threading.Event()
        self._started = clock()
        #: successful visibility extensions and lease renewals so far
        self.beats = self.renewals = 0
        rid = token.work_rid
        self._threads = [threading.Thread(target=self._renew_lease, name=f"lease-{rid}", daemon=True),
                         threading.Thread(target=self._extend_visibility, name=f"heartbeat-{rid}", daemon=True)]

    def start(self) -> None:
        self._started = self.clock()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout=5)

    def _ticks(self, first: int) -> Iterator[None]:
        """One thread's beats at fixed times, ``start + k * interval`` from beat ``first`` on (one that overran
        skips the beats it missed), until ``stop``. Both threads keep that one schedule, never drifting apart by
        their calls' durations, so a lease renewed at a beat ends (``LEASE_SHARE``) before the visibility extended
        at the same beat does."""
        k = first
        while not self._stop.wait(max(0.0, self._started + k * self.interval - self.clock())):
            yield
            k = max(k + 1, int((self.clock() - self._started) / self.interval) + 1)

    def _renew_lease(self) -> None:
        """While the lease is ours no other finisher starts this work, even if SQS shows the message again after
        a throttled extension."""
        rid = self.token.work_rid
        for _ in self._ticks(1):
            try:
                renewed = self.lease.ledger.renew_lease(self.lease.idempotency_key, self.lease.owner,
                                                         lease_ttl(self.visibility_s))
            except (SQLAlchemyError, LedgerUnavailable) as err:  # a database away past its retries: next beat
                logger.warning("%s: lease renewal failed: %s", rid, err, extra={"work_rid": rid})
                continue
            if not renewed:
                if self._stop.is_set():  # the work ended while the renewal ran: its lease is released, not lost
                    return
                logger.warning("%s: ledger lease taken by another finisher: stopping the work", rid,
                               extra={"work_rid": rid})
                self.token.cancel(InterruptReason.LEASE_LOST)
                return
            self.renewals += 1

    def _extend_visibility(self) -> None:
        rid = self.token.work_rid
        for _ in self._ticks(0):  # the first at once: the message visible again after the lease taken just now
            remaining_cap = self.max_visibility_s - (self.clock() - self.message.received_monotonic)
            if remaining_cap <= self.handoff_margin_s and not self.token.is_set():
                logger.info("%s: %.0f s left before the 12 h visibility cap: handing the work on at its next "
                            "checkpoint", rid, remaining_cap, extra={"work_rid": rid})
                self.token.cancel(InterruptReason.HANDOFF)
            extension = int(min(self.visibility_s, remaining_cap - 1))
            if extension <= 0:
                continue
            try:
                self.queue.set_visibility(self.message, extension)
            except ReceiptHandleInvalid as err:
                logger.warning("%s: visibility extension refused (%s): stopping the work", rid, err,
                               extra={"work_rid": rid})
                self.token.cancel(InterruptReason.LEASE_LOST)
                return
            except (BotoCoreError, ClientError) as err:  # transient: the lease still guards the work
                logger.warning("%s: visibility extension failed: %s", rid, err, extra={"work_rid": rid})
                continue
            self.beats += 1
            logger.debug("%s: visibility extended by %d s", rid, extension, extra={"work_rid": rid})
