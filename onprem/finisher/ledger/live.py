"""The ledger read for the live view (``finisher top``): the works leased now, the latest failures, the count of
works per phase. Read queries on the ledger's engine, one statement each, no history loaded; every host of a
shared ledger sees the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from onprem.finisher.ledger.leases import database_clock
from onprem.finisher.ledger.models import WorkRow


@dataclass(frozen=True)
class LeasedWork:
    """A work some finisher holds the lease of: it is in one of that finisher's slots."""

    idempotency_key: str
    work_rid: str
    phase: str
    source: str
    size: int | None
    #: ``host:pid/attempt`` (``work/runtime.owner_id`` and the attempt's suffix)
    lease_owner: str
    #: naive UTC: the last renewal by its heartbeat
    lease_heartbeat_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class FailedWork:
    """A work whose last attempt failed (its cause kept until it syncs), latest first."""

    work_rid: str
    phase: str
    cause: str
    message: str | None
    attempts: int
    #: naive UTC
    updated_at: datetime


def leased_works(engine: sa.Engine) -> list[LeasedWork]:
    """Works whose lease is live on the ledger's clock, the longest held first."""
    now = database_clock(engine.dialect.name)
    query = (sa.select(WorkRow.idempotency_key, WorkRow.work_rid, WorkRow.phase, WorkRow.source, WorkRow.size,
                       WorkRow.lease_owner, WorkRow.lease_heartbeat_at, WorkRow.updated_at)
             .where(WorkRow.lease_owner.is_not(None), WorkRow.lease_expires_at > now)
             .order_by(WorkRow.updated_at, WorkRow.id))
    with engine.connect() as connection:
        return [LeasedWork(*row) for row in connection.execute(query)]


def recent_failures(engine: sa.Engine, limit: int) -> list[FailedWork]:
    """The ``limit`` works failed or retrying most recently (a cause recorded, not synced since)."""
    query = (sa.select(WorkRow.work_rid, WorkRow.phase, WorkRow.last_cause, WorkRow.last_error, WorkRow.attempts,
                       WorkRow.updated_at)
             .where(WorkRow.last_cause.is_not(None))
             .order_by(WorkRow.updated_at.desc(), WorkRow.id.desc()).limit(limit))
    with engine.connect() as connection:
        return [FailedWork(*row) for row in connection.execute(query)]


def phase_counts(engine: sa.Engine) -> dict[str, int]:
    """How many works of the ledger are in each phase."""
    query = sa.select(WorkRow.phase, sa.func.count()).group_by(WorkRow.phase)
    with engine.connect() as connection:
        return {phase: int(count) for phase, count in connection.execute(query)}
