"""What the metrics see of a run: the heartbeat and the gauges an idle finisher still owes, the hides and renewals
of the worker loop, and the bytes of a download as they arrive.

``RunMetrics`` is the worker's ``RunObserver``: it starts the metrics thread (``metrics_batch.BatchedMetrics``) with
the run and closes it (a last send) after the last work. Each round of that thread publishes FinisherHeartbeat
while the worker loop turns — idle or busy; a loop stuck for longer than ``STALE_AFTER_S`` publishes none and the
heartbeat alarm fires — and ticks the expiry gauge, so HoursToEarliestRestoreExpiry keeps coming while nothing is
being worked. ``metered_progress`` reports a download's bytes to BytesDownloaded as the fetch advances its progress
(summed per flush interval by the batcher).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from onprem.finisher.metrics import Metrics
from onprem.finisher.metrics_batch import BatchedMetrics
from onprem.finisher.progress import Progress
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.expiry import ExpiryGauge

#: the progress label of a download (work/wiring.py: the fetch's reporter)
DOWNLOAD_LABEL = "download"
#: a loop that has not turned for this long (a pass waits 1 s at most; a long poll 20 s) is not alive
STALE_AFTER_S = 60.0


class Totals(Protocol):
    """The worker loop's counts since the start (``worker.PassTotals``)."""

    @property
    def hidden(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def renewed(self) -> int: ...


@dataclass(frozen=True)
class _Reported:
    hidden: int = 0
    waiting: int = 0
    renewed: int = 0


class RunMetrics:
    """The metrics of one run (``worker.RunObserver``); without a batcher (tests' LogMetrics) only the pass
    counts are recorded."""

    def __init__(self, metrics: Metrics, expiry: ExpiryGauge | None = None, host: str | None = None, *,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.metrics, self.expiry, self.stale_after_s = metrics, expiry, stale_after_s
        self.host = host or socket.gethostname()
        self.regions: list[str] = []
        self._lock = threading.Lock()
        self._last_pass: float | None = None
        self._reported: Totals = _Reported()
        self.batcher = metrics if isinstance(metrics, BatchedMetrics) else None

    def started(self, queues: list[WorkQueue]) -> None:
        self.regions = sorted({queue.region for queue in queues})
        self._last_pass = time.monotonic()
        if self.batcher:
            self.batcher.add_ticker(self.tick)
            self.batcher.start()

    def passed(self, totals: Totals) -> None:
        """The loop turned: the heartbeat stays on; what was hidden or renewed since the last pass is counted."""
        with self._lock:
            self._last_pass = time.monotonic()
            reported, self._reported = self._reported, totals
        self.metrics.messages_hidden("backlog", totals.hidden - reported.hidden)
        self.metrics.messages_hidden("restore_wait", totals.waiting - reported.waiting)
        self.metrics.restores_renewed(totals.renewed - reported.renewed)

    def stopped(self) -> None:
        if self.batcher:
            self.batcher.close()

    def tick(self) -> None:
        """One round of the metrics thread: the heartbeat when the loop is alive, the expiry gauge (throttled)."""
        with self._lock:
            alive = self._last_pass is not None and time.monotonic() - self._last_pass <= self.stale_after_s
        if alive:
            self.metrics.heartbeat(self.regions, self.host)
        if self.expiry is not None:
            self.expiry.tick()


class MeteredProgress:
    """Forwards to ``inner``; every byte advanced is BytesDownloaded (a resumed download counts its kept parts at
    its start, a failed part's rewind is negative: the sum is the zip's size, as before, but while it arrives)."""

    def __init__(self, inner: Progress, metrics: Metrics) -> None:
        self.inner, self.metrics = inner, metrics

    def start(self, total_bytes: int, total_files: int) -> None:
        self.inner.start(total_bytes, total_files)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        self.inner.advance(nbytes, files)
        if nbytes:
            self.metrics.bytes_downloaded(nbytes)

    def finish(self) -> None:
        self.inner.finish()


def metered_progress(progress_for: Callable[[str, str], Progress],
                     metrics: Metrics) -> Callable[[str, str], Progress]:
    """``progress_for`` whose download reporters also feed BytesDownloaded."""
    def make(label: str, work_rid: str) -> Progress:
        progress = progress_for(label, work_rid)
        return MeteredProgress(progress, metrics) if label == DOWNLOAD_LABEL else progress
    return make
