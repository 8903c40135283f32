"""The ledger as the index of the queued backlog: the works seen on a queue and not yet taken, with their restore
expiry, and the fleet's measured throughput (read queries on the ledger's engine; every host of a shared ledger
sees the same).

A work is queued from its first receive (``store.Ledger.register``) until a finisher leases it; a row not seen again
within ``stale_after`` (its message gone: deleted elsewhere, moved to the DLQ) drops out of the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from onprem.finisher.ledger.models import Phase, WorkRow, naive_utc

#: the phases of a work whose message waits on a queue (a retried work comes back in the phase it reached)
QUEUED_PHASES = (Phase.RECEIVED, Phase.RESTORE_COMPLETED, Phase.DOWNLOADED, Phase.DEBAGGED)


@dataclass(frozen=True)
class QueuedWork:
    idempotency_key: str
    work_rid: str
    region: str | None
    bucket: str | None
    key: str | None
    version_id: str | None
    #: aware UTC
    restore_expiry: datetime


def queued_works(engine: sa.Engine, now: datetime, stale_after: timedelta) -> list[QueuedWork]:
    """Queued works with a known restore expiry, earliest first, none leased (lease live at ``now``)."""
    naive_now = naive_utc(now)
    assert naive_now is not None
    query = (sa.select(WorkRow.idempotency_key, WorkRow.work_rid, WorkRow.region, WorkRow.bucket, WorkRow.key,
                       WorkRow.version_id, WorkRow.restore_expiry)
             .where(WorkRow.source == "queue", WorkRow.phase.in_([str(p) for p in QUEUED_PHASES]),
                    WorkRow.restore_expiry.is_not(None), WorkRow.updated_at >= naive_now - stale_after,
                    sa.or_(WorkRow.lease_owner.is_(None), WorkRow.lease_expires_at < naive_now))
             .order_by(WorkRow.restore_expiry, WorkRow.id))
    with engine.connect() as connection:
        return [QueuedWork(*row[:6], row[6].replace(tzinfo=UTC)) for row in connection.execute(query)]


def synced_per_second(engine: sa.Engine, now: datetime, window: timedelta, min_samples: int = 3) -> float | None:
    """Works synced per second by the whole fleet over the last ``window`` (from the first sync in it to
    ``now``); None with fewer than ``min_samples`` syncs to measure by."""
    naive_now = naive_utc(now)
    assert naive_now is not None
    query = sa.select(sa.func.count(), sa.func.min(WorkRow.synced_at)).where(
        WorkRow.synced_at.is_not(None), WorkRow.synced_at >= naive_now - window)
    with engine.connect() as connection:
        count, first = connection.execute(query).one()
    if count < min_samples or first is None:
        return None
    span = (naive_now - first).total_seconds()
    return count / span if span > 0 else None
