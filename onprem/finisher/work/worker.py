"""The worker loop: long-poll every region's queue (all at once: queue/poll.py), fill N work slots (earliest
restore expiry first), shut down gracefully.

One message per slot. A first SIGTERM/SIGINT stops receiving and lets in-flight works finish within the grace
period; after it they are interrupted at their next checkpoint and their messages released (visibility 0).
``drain`` runs until the queues are empty and nothing is in flight (tests, the demo).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from onprem.finisher.errors import InterruptReason, LedgerUnavailable
from onprem.finisher.queue.lookahead import Lookahead
from onprem.finisher.queue.poll import PollRequest, QueuePoller
from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue
from onprem.finisher.work.cancel import TokenRegistry
from onprem.finisher.work.outcome import Outcome
from onprem.finisher.work.settings import Settings

logger = logging.getLogger(__name__)

DRAIN_WAIT_S = 2
#: a pass of the loop waits this long at most for a poll to end (the look-ahead's extensions, the renewals and
#: the heartbeat turn meanwhile)
PASS_WAIT_S = 1.0
#: after the grace period, how much longer than a sync's termination the shutdown waits for the works it stopped
STOP_MARGIN_S = 5.0
#: with the backlog index, messages received per pass beyond what the slots and the look-ahead take: the scan
#: that registers the backlog, so a work's place is known from its first receive
BACKLOG_SCAN = 500
#: a drain ends on this many empty readings of every queue in a row, a receive pass between two: the counts are
#: approximate (SQS's by design, moto's read one after the other) and a message whose delay or hiding ends between
#: two of them is in none
EMPTY_READINGS = 2


@dataclass
class RunSummary:
    outcomes: Counter[str] = field(default_factory=Counter)
    unfinished: int = 0
    left_in_queues: dict[str, dict[str, int]] = field(default_factory=dict)
    #: queue name → the last error that kept it from being read (receive or depth), cleared by a good receive:
    #: a drain that could not read a queue has not drained it
    queue_errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"outcomes": dict(self.outcomes), "unfinished": self.unfinished, "left_in_queues": self.left_in_queues,
                "queue_errors": self.queue_errors}


class MessageProcessor(Protocol):
    """One message, start to finish (``runner.WorkRunner``): returns the outcome (synced, retry, failed …)."""

    def process(self, queue: WorkQueue, message: ReceivedMessage) -> str: ...


class Backlog(Protocol):
    """The whole backlog's order (``backlog.BacklogIndex``): where received messages go, renewals when due."""

    def hide_for(self, messages: list[ReceivedMessage]) -> list[int]: ...

    def renew_due(self) -> int: ...


@dataclass(frozen=True)
class PassTotals:
    """Since the run started: messages hidden until their turn or handed on (the backlog), waiting continuations
    hidden or handed on (a restore not ready), copies renewed."""

    hidden: int
    waiting: int
    renewed: int


class RunObserver(Protocol):
    """Lives as long as one run (work/metered.py: the metrics thread and its heartbeat): told when the loop starts,
    at each pass, and after the last work ended."""

    def started(self, queues: list[WorkQueue]) -> None: ...

    def passed(self, totals: PassTotals) -> None: ...

    def stopped(self) -> None: ...


class Worker:
    def __init__(self, settings: Settings, queues: list[WorkQueue], runner: MessageProcessor,
                 tokens: TokenRegistry, backlog: Backlog | None = None, observer: RunObserver | None = None) -> None:
        self.settings, self.queues, self.runner, self.tokens, self.backlog = settings, queues, runner, tokens, backlog
        self.observer = observer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.summary = RunSummary()
        self._renewed = 0
        self._empty_readings = 0

    def request_stop(self) -> None:
        """First signal: stop receiving; in-flight works get the grace period."""
        if not self._stop.is_set():
            logger.info("stop requested: no new work; %.0f s grace for the works in flight",
                        self.settings.worker.grace_period)
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, drain: bool = False) -> RunSummary:
        slots = self.settings.worker.concurrency
        pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="slot")
        in_flight: set[Future[str]] = set()
        lookahead = Lookahead(self.settings.worker.backlog_lookahead, self.settings.worker.visibility_timeout,
                              self.settings.worker.heartbeat_fraction, self.settings.worker.max_visibility,
                              self.settings.worker.handoff_margin, self.settings.environment.queues.max_receive_count,
                              hide_for=self._hide_for(drain), slots=slots if self._shared_ledger else None)
        scan = BACKLOG_SCAN if self.backlog else 0
        idle_since: float | None = None
        poller = QueuePoller(self.queues, self._stop)
        logger.info("finisher started: %d slot(s), queues %s%s", slots, ", ".join(q.queue_name for q in self.queues),
                    " (drain)" if drain else "")
        if self.observer:
            self.observer.started(self.queues)
        try:
            while not self._stop.is_set():
                if self.observer:
                    self.observer.passed(self._totals(lookahead))
                lookahead.keep_invisible()
                if self.backlog:
                    self._renewed += self.backlog.renew_due()
                in_flight = {f for f in in_flight if not f.done()}
                free = slots - len(in_flight)
                if free <= 0:
                    # a poll that ended meanwhile: its messages held (extended), not left to time out
                    lookahead.choose(self._receive_all(poller, 0, drain, quick=True), 0)
                    wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                    continue
                ask = lookahead.wanted(free, scan)
                received = self._receive_all(poller, ask.count, drain, quick=len(lookahead) > 0)
                if ask.scans:
                    lookahead.scanned()
                if self._stop.is_set():
                    for queue, message in received:
                        queue.release(message)
                    break
                for item in lookahead.choose(received, free):
                    in_flight.add(pool.submit(self._process, item.queue, item.message))
                if received or in_flight or len(lookahead):
                    idle_since, self._empty_readings = None, 0
                    if not received:
                        wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                    continue
                if not drain:
                    if self.settings.worker.wait_time_seconds == 0:
                        self._stop.wait(1.0)  # no long poll to pace the loop
                    continue
                idle_since = idle_since or time.monotonic()
                if self._drained(time.monotonic() - idle_since):
                    break
        finally:
            self._stop.set()
            lookahead.release_all()
            self._finish(pool, in_flight)
            poller.close(self.settings.worker.wait_time_seconds + 1.0)  # polls in flight end by themselves
            if self.observer:
                self.observer.passed(self._totals(lookahead))  # the works that ended after the last pass
                self.observer.stopped()
        return self.summary

    def _totals(self, lookahead: Lookahead) -> PassTotals:
        with self._lock:
            waiting = self.summary.outcomes[Outcome.WAITING]
        return PassTotals(lookahead.hidden + lookahead.handed_on, waiting, self._renewed)

    @property
    def _shared_ledger(self) -> bool:
        """A server ledger: other hosts share the queues, so the look-ahead holds nothing ahead of the free slots."""
        return not self.settings.ledger_url.startswith("sqlite")

    def _hide_for(self, drain: bool) -> Callable[[list[ReceivedMessage]], list[int]] | None:
        """The backlog's placement of received messages; in a drain, no message is hidden past the drain's idle
        limit: the drain ends once nothing arrives for that long, and must not end with the backlog hidden."""
        if self.backlog is None:
            return None
        if not drain:
            return self.backlog.hide_for
        backlog, cap = self.backlog, max(1, int(self.settings.worker.drain_idle_limit) - 1)
        return lambda messages: [min(seconds, cap) for seconds in backlog.hide_for(messages)]

    def _receive_all(self, poller: QueuePoller, wanted: int, drain: bool, *,
                     quick: bool) -> list[tuple[WorkQueue, ReceivedMessage]]:
        """What the queues' polls (all at once, one each) brought within a pass; ``quick`` (messages already
        held): no waiting."""
        # a drain only needs to see whether anything is left: no long wait on an empty queue
        wait_s = self.settings.worker.wait_time_seconds
        wait_s = 0 if quick else min(wait_s, DRAIN_WAIT_S) if drain else wait_s
        received: list[tuple[WorkQueue, ReceivedMessage]] = []
        request = PollRequest(wanted, wait_s, self.settings.worker.visibility_timeout)
        for result in poller.collect(request, 0 if quick else PASS_WAIT_S):
            if result.error:
                self.summary.queue_errors[result.queue.queue_name] = result.error
            else:
                self.summary.queue_errors.pop(result.queue.queue_name, None)
            received += [(result.queue, message) for message in result.messages]
        return received

    def _process(self, queue: WorkQueue, message: ReceivedMessage) -> str:
        try:
            outcome = self.runner.process(queue, message)
        except LedgerUnavailable as err:  # one line, not a traceback per message: the operator must act on it
            logger.error("message %s: %s: it comes back after its visibility timeout", message.message_id, err)
            outcome = Outcome.LEDGER_UNAVAILABLE
        except Exception:  # the slot survives anything; the message comes back after its visibility timeout
            logger.exception("message %s: unhandled error in its slot", message.message_id)
            outcome = Outcome.ERROR
        with self._lock:
            self.summary.outcomes[outcome] += 1
        return outcome

    def _drained(self, idle_s: float) -> bool:
        """Drain ends when every queue reads empty (nothing visible, in flight or delayed) ``EMPTY_READINGS``
        times in a row, or after a long idle."""
        depths = {}
        for queue in self.queues:
            try:
                depths[queue.queue_name] = queue.depth()
            except (BotoCoreError, ClientError) as err:
                logger.warning("%s: cannot read the queue depth: %s", queue.queue_name, err)
                self.summary.queue_errors[queue.queue_name] = f"cannot read the queue depth: {err}"
                return idle_s >= self.settings.worker.drain_idle_limit
        self.summary.left_in_queues = depths
        pending = sum(d["visible"] + d["in_flight"] + d["delayed"] for d in depths.values())
        if pending == 0 and self.summary.queue_errors:
            return idle_s >= self.settings.worker.drain_idle_limit  # refused receives are not empty queues
        self._empty_readings = self._empty_readings + 1 if pending == 0 else 0
        if self._empty_readings >= EMPTY_READINGS:
            logger.info("drained: all queues empty")
            return True
        if self._empty_readings:
            return False  # read again after one more receive pass, at once
        if idle_s >= self.settings.worker.drain_idle_limit:
            logger.warning("drain stops after %.0f s idle with messages still hidden (backoff): %s", idle_s, depths)
            return True
        self._stop.wait(min(1.0, max(self.settings.worker.wait_time_seconds, 0.2)))
        return False

    def _finish(self, pool: ThreadPoolExecutor, in_flight: set[Future[str]]) -> None:
        running = {f for f in in_flight if not f.done()}
        if running:
            logger.info("waiting up to %.0f s for %d work(s) in flight", self.settings.worker.grace_period,
                        len(running))
            _, running = wait(running, timeout=self.settings.worker.grace_period)
        if running:
            cancelled = self.tokens.cancel_all(InterruptReason.SHUTDOWN)
            # a sync or hook is stopped with its process group: SIGTERM, SIGKILL after terminate_timeout_s
            stop_wait = self.settings.sync.terminate_timeout_s + STOP_MARGIN_S
            logger.info("grace period over: %d work(s) asked to stop (checkpoint, or their sync's process group "
                        "terminated): waiting up to %.0f s", cancelled, stop_wait)
            _, running = wait(running, timeout=stop_wait)
        self.summary.unfinished = len(running)
        if running:
            logger.warning("%d work(s) still busy (e.g. inside the sync script): their messages reappear after "
                           "the visibility timeout", len(running))
        pool.shutdown(wait=not running, cancel_futures=True)
