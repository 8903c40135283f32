"""Custom metrics in the dashboard's namespace: what the finisher measures, by name, unit and dimensions.

Where a datum goes: CloudWatch in production (``metrics_batch.BatchedMetrics``: a bounded buffer, a background
thread, PutMetricData in batches), nowhere locally (``NullMetrics``), a list in tests (``LogMetrics``). The names,
their units and dimensions (the dashboard's SEARCH schemas and the alarms read exactly these:
infra/cdk/constructs/dashboard.py, alarms.py):

- BytesDownloaded (Bytes): as the download reports its progress, summed per flush interval
- WorksSynced, WorkFailures {cause}, RestoresRenewed, MessagesHidden {reason: backlog | restore_wait} (Count)
- PhaseDuration {phase} (Seconds), HoursToEarliestRestoreExpiry (no unit: CloudWatch has no hours; work/expiry.py)
- FinisherHeartbeat {region} and {host} (Count, 1 per flush interval while the worker loop turns)
- MetricsDropped (Count): datums the buffer had no room for, or CloudWatch did not take
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger(__name__)

#: hours until the earliest unsynced restore expires (CloudWatch has no hour unit: published unitless)
RESTORE_EXPIRY_METRIC = "HoursToEarliestRestoreExpiry"
HEARTBEAT_METRIC = "FinisherHeartbeat"
DROPPED_METRIC = "MetricsDropped"
#: each name's CloudWatch unit, and whether its datums are counts (summed per flush interval) or samples (sent
#: one by one: a duration's or a gauge's statistics need each value)
UNITS: dict[str, tuple[str, bool]] = {
    "BytesDownloaded": ("Bytes", True), "WorksSynced": ("Count", True), "WorkFailures": ("Count", True),
    "RestoresRenewed": ("Count", True), "MessagesHidden": ("Count", True), HEARTBEAT_METRIC: ("Count", True),
    DROPPED_METRIC: ("Count", True), "PhaseDuration": ("Seconds", False), RESTORE_EXPIRY_METRIC: ("None", False),
}


@dataclass(frozen=True)
class Datum:
    """One value of one metric: its dimensions sorted by name, its wall-clock time (epoch seconds)."""

    name: str
    value: float
    dimensions: tuple[tuple[str, str], ...] = ()
    at: float = field(default_factory=time.time)

    @property
    def unit(self) -> str:
        return UNITS[self.name][0]

    @property
    def summed(self) -> bool:
        return UNITS[self.name][1]


class Metrics(Protocol):
    def bytes_downloaded(self, nbytes: int) -> None: ...

    def work_synced(self) -> None: ...

    def work_failed(self, cause: str) -> None: ...

    def phase_duration(self, phase: str, seconds: float) -> None: ...

    def restore_expiry_hours(self, hours: float) -> None: ...

    def restores_renewed(self, count: int) -> None: ...

    def messages_hidden(self, reason: str, count: int) -> None: ...

    def heartbeat(self, regions: Sequence[str], host: str) -> None: ...


class NamedMetrics:
    """The named metrics, each one ``record(Datum)``; a subclass says where a datum goes (never raising)."""

    def record(self, datum: Datum) -> None:
        return None

    def _put(self, name: str, value: float, **dimensions: str) -> None:
        self.record(Datum(name, float(value), tuple(sorted(dimensions.items()))))

    def bytes_downloaded(self, nbytes: int) -> None:
        if nbytes:  # a failed part's rewind arrives negative: the interval's sum stays the bytes kept
            self._put("BytesDownloaded", nbytes)

    def work_synced(self) -> None:
        self._put("WorksSynced", 1)

    def work_failed(self, cause: str) -> None:
        self._put("WorkFailures", 1, cause=cause)

    def phase_duration(self, phase: str, seconds: float) -> None:
        self._put("PhaseDuration", seconds, phase=phase)

    def restore_expiry_hours(self, hours: float) -> None:
        self._put(RESTORE_EXPIRY_METRIC, hours)

    def restores_renewed(self, count: int) -> None:
        if count > 0:
            self._put("RestoresRenewed", count)

    def messages_hidden(self, reason: str, count: int) -> None:
        if count > 0:
            self._put("MessagesHidden", count, reason=reason)

    def heartbeat(self, regions: Sequence[str], host: str) -> None:
        """1 per region whose queue this finisher polls (the alarm's dimension) and 1 for its host (the
        dashboard's)."""
        for region in regions:
            self._put(HEARTBEAT_METRIC, 1, region=region)
        self._put(HEARTBEAT_METRIC, 1, host=host)


class NullMetrics(NamedMetrics):
    """Metrics off (the embedded demo, a moto endpoint)."""


class LogMetrics(NamedMetrics):
    """Keeps every datum (tests read ``points``) and logs it at DEBUG."""

    def __init__(self) -> None:
        self.points: list[tuple[str, dict[str, str], float]] = []
        self._lock = threading.Lock()

    def record(self, datum: Datum) -> None:
        with self._lock:
            self.points.append((datum.name, dict(datum.dimensions), datum.value))
        logger.debug("metric %s %s %s", datum.name, dict(datum.dimensions), datum.value,
                     extra={"metric": datum.name, "value": datum.value})

    def total(self, name: str, **dimensions: str) -> float:
        with self._lock:
            points = list(self.points)
        return sum(v for n, d, v in points if n == name and all(d.get(k) == x for k, x in dimensions.items()))
