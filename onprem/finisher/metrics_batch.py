"""CloudWatch metrics batched on a background thread: a work only appends to a bounded buffer, never waits.

Every ``interval_s`` the thread runs the tickers (the heartbeat and the gauges an idle finisher still owes:
work/metered.py), takes what the buffer holds and sends it with PutMetricData, at most ``MAX_DATUMS_PER_CALL`` a
call; ``close`` runs a last round. Counts are summed per interval (one BytesDownloaded datum per interval during a
download, however many chunks arrived), samples (durations, gauges) sent one by one. A full buffer drops the new
datum; a failing CloudWatch loses that call's datums; both are counted (``dropped``), logged once per interval and
published as MetricsDropped. Nothing here raises into a work or the worker loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onprem.finisher.metrics import DROPPED_METRIC, Datum, NamedMetrics

logger = logging.getLogger(__name__)

#: PutMetricData takes at most 1000 datums per call
MAX_DATUMS_PER_CALL = 1000
#: ``close`` waits this long at most for the last round (a CloudWatch that does not answer must not hold a stop)
CLOSE_TIMEOUT_S = 10.0

Key = tuple[str, tuple[tuple[str, str], ...]]


class BatchedMetrics(NamedMetrics):
    """The named metrics sent to CloudWatch in ``namespace`` by one background thread (``start``/``close``)."""

    def __init__(self, cloudwatch_client: Any, namespace: str, *, interval_s: float = 60.0,
                 capacity: int = 10_000) -> None:
        self.client, self.namespace, self.interval_s, self.capacity = (
            cloudwatch_client, namespace, interval_s, capacity)
        self._lock = threading.Lock()
        self._sums: dict[Key, float] = {}
        self._samples: list[Datum] = []
        self._tickers: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: since the start: datums sent, datums lost (no room, or CloudWatch failed), PutMetricData calls
        self.sent = self.dropped = self.calls = 0
        #: ``dropped`` as last published (MetricsDropped) and as last logged
        self._dropped_published = self._dropped_logged = 0
        self._last_failure: str | None = None

    def record(self, datum: Datum) -> None:
        """Buffer ``datum`` (never blocks on I/O): a count adds to its interval's sum, a sample waits its turn."""
        with self._lock:
            if datum.summed and (datum.name, datum.dimensions) in self._sums:
                self._sums[(datum.name, datum.dimensions)] += datum.value
            elif len(self._sums) + len(self._samples) >= self.capacity:
                self.dropped += 1
            elif datum.summed:
                self._sums[(datum.name, datum.dimensions)] = datum.value
            else:
                self._samples.append(datum)

    def add_ticker(self, ticker: Callable[[], None]) -> None:
        """Run ``ticker`` on the metrics thread before each send (it records through this sink)."""
        self._tickers.append(ticker)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """A last round (tickers, send), then the thread ends; waits at most ``timeout_s``."""
        self._stop.set()
        if self._thread is None:
            self.send_round()
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("metrics: the last send did not end within %.0f s: its datums may be lost", timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.send_round()
        self.send_round()

    def send_round(self) -> int:
        """Tickers, then every buffered datum sent; returns how many CloudWatch took."""
        for ticker in self._tickers:
            try:
                ticker()
            except Exception:  # a gauge that cannot be read (ledger away) skips this round, the rest goes out
                logger.warning("metrics: a periodic metric failed this round", exc_info=True)
        datums = self._take()
        sent = 0
        for start in range(0, len(datums), MAX_DATUMS_PER_CALL):
            sent += self._send(datums[start:start + MAX_DATUMS_PER_CALL])
        self._report_drops()
        return sent

    def _take(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            sums, samples = self._sums, self._samples
            # a net negative count (a rewound part after its bytes went out) waits to be made good
            self._sums = {key: value for key, value in sums.items() if value < 0}
            self._samples = []
            lost, self._dropped_published = self.dropped - self._dropped_published, self.dropped
        counts = [Datum(name, value, dimensions, now) for (name, dimensions), value in sums.items() if value > 0]
        if lost:
            counts.append(Datum(DROPPED_METRIC, lost, (), now))
        return [_cloudwatch_datum(datum) for datum in counts + samples]

    def _send(self, datums: list[dict[str, Any]]) -> int:
        try:
            self.client.put_metric_data(Namespace=self.namespace, MetricData=datums)
        except (BotoCoreError, ClientError) as err:
            with self._lock:
                self.dropped += len(datums)
            self._last_failure = str(err)
            return 0
        with self._lock:
            self.sent += len(datums)
            self.calls += 1
        return len(datums)

    def _report_drops(self) -> None:
        """One line per interval with drops: how many, and why."""
        with self._lock:
            lost, self._dropped_logged = self.dropped - self._dropped_logged, self.dropped
        if lost:
            cause, self._last_failure = self._last_failure, None
            logger.warning("metrics: %d datum(s) lost in the last %.0f s (%s); the finisher goes on", lost,
                           self.interval_s, f"CloudWatch: {cause}" if cause else
                           f"buffer full at {self.capacity}", extra={"metrics_dropped": lost})


def _cloudwatch_datum(datum: Datum) -> dict[str, Any]:
    return {"MetricName": datum.name, "Value": datum.value, "Unit": datum.unit,
            "Timestamp": datetime.fromtimestamp(datum.at, UTC),
            "Dimensions": [{"Name": name, "Value": value} for name, value in datum.dimensions]}
