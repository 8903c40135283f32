"""Alarm before expiry: "hours until the earliest unsynced restore expires", from the ledger, as a metric.

A work counts while it is on its way (not synced, superseded or failed) and its restored copy's expiry (the
ledger's ``restore_expiry``, from the message or the restore check) is still ahead: a copy already gone is the
re-request's business (work/waiting.py), a failed work the DLQ alarm's. Nothing is published when no work counts,
so the CloudWatch alarm (infra/cdk/constructs/alarms.py, missing data not breaching) returns to OK.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from onprem.finisher.ledger.store import Ledger, Phase
from onprem.finisher.metrics import Metrics

logger = logging.getLogger(__name__)

#: phases whose restored copy no longer matters to the finisher
DONE_PHASES = frozenset({Phase.SYNCED, Phase.SUPERSEDED, Phase.FAILED})


def hours_to_earliest_expiry(ledger: Ledger, now: datetime | None = None) -> tuple[float, str] | None:
    """Hours until the earliest restored copy of a work still on its way expires, and that work's RID; None when
    no such work has an expiry ahead."""
    now_naive = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)  # the ledger stores naive UTC
    ahead = [(record.restore_expiry, record.work_rid) for record in ledger.works()
             if record.phase not in DONE_PHASES and record.source != "rejected"
             and record.restore_expiry is not None and record.restore_expiry > now_naive]
    if not ahead:
        return None
    expiry, rid = min(ahead)
    return (expiry - now_naive).total_seconds() / 3600, rid


class ExpiryGauge:
    """Publishes ``hours_to_earliest_expiry`` at most every ``interval_s`` seconds; ``tick`` from any thread."""

    def __init__(self, ledger: Ledger, metrics: Metrics, interval_s: float) -> None:
        self.ledger, self.metrics, self.interval_s = ledger, metrics, interval_s
        self._lock = threading.Lock()
        self._last: float | None = None

    def tick(self) -> float | None:
        """Publish now if the interval has passed; returns the hours published (None: nothing published)."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last < self.interval_s:
                return None
            self._last = now
        earliest = hours_to_earliest_expiry(self.ledger)
        if earliest is None:
            return None
        hours, rid = earliest
        self.metrics.restore_expiry_hours(hours)
        logger.debug("earliest unsynced restore expiry: %s in %.1f h", rid, hours, extra={"work_rid": rid})
        return hours
