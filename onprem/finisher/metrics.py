"""Custom metrics in the dashboard's namespace: CloudWatch in production, a null sink locally, a log sink in tests.

Names: BytesDownloaded, WorksSynced, WorkFailures (dimension ``cause``), PhaseDuration (dimension ``phase``),
HoursToEarliestRestoreExpiry (the earliest restored copy of a work not yet synced: work/expiry.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

#: hours until the earliest unsynced restore expires (CloudWatch has no hour unit: published unitless)
RESTORE_EXPIRY_METRIC = "HoursToEarliestRestoreExpiry"


class Metrics(Protocol):
    def bytes_downloaded(self, nbytes: int) -> None: ...

    def work_synced(self) -> None: ...

    def work_failed(self, cause: str) -> None: ...

    def phase_duration(self, phase: str, seconds: float) -> None: ...

    def restore_expiry_hours(self, hours: float) -> None: ...


class NullMetrics:
    """Local mode: metrics off."""

    def bytes_downloaded(self, nbytes: int) -> None:
        return None

    def work_synced(self) -> None:
        return None

    def work_failed(self, cause: str) -> None:
        return None

    def phase_duration(self, phase: str, seconds: float) -> None:
        return None

    def restore_expiry_hours(self, hours: float) -> None:
        return None


@dataclass
class LogMetrics:
    """Keeps every datum (tests read ``points``) and logs it at DEBUG."""

    points: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _put(self, name: str, value: float, **dimensions: str) -> None:
        with self._lock:
            self.points.append((name, dimensions, value))
        logger.debug("metric %s %s %s", name, dimensions, value, extra={"metric": name, "value": value})

    def bytes_downloaded(self, nbytes: int) -> None:
        self._put("BytesDownloaded", nbytes)

    def work_synced(self) -> None:
        self._put("WorksSynced", 1)

    def work_failed(self, cause: str) -> None:
        self._put("WorkFailures", 1, cause=cause)

    def phase_duration(self, phase: str, seconds: float) -> None:
        self._put("PhaseDuration", seconds, phase=phase)

    def restore_expiry_hours(self, hours: float) -> None:
        self._put(RESTORE_EXPIRY_METRIC, hours)

    def total(self, name: str, **dimensions: str) -> float:
        return sum(v for n, d, v in self.points if n == name and all(d.get(k) == x for k, x in dimensions.items()))


class CloudWatchMetrics(LogMetrics):
    """PutMetricData, one call per datum (a handful per work); failures are logged, never fatal."""

    def __init__(self, cloudwatch_client: Any, namespace: str) -> None:
        super().__init__()
        self.client, self.namespace = cloudwatch_client, namespace

    def _put(self, name: str, value: float, **dimensions: str) -> None:
        unit = {"BytesDownloaded": "Bytes", "PhaseDuration": "Seconds", RESTORE_EXPIRY_METRIC: "None"}.get(name,
                                                                                                        "Count")
        datum = {"MetricName": name, "Value": float(value), "Unit": unit,
                 "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]}
        try:
            self.client.put_metric_data(Namespace=self.namespace, MetricData=[datum])
        except (BotoCoreError, ClientError) as err:
            logger.warning("metric %s not sent: %s", name, err)
