"""The lease statements: which finisher works on a work now, as compare-and-set UPDATEs.

Each statement is one ``UPDATE works … WHERE idempotency_key = :key AND <the lease is ours to take>``; its row
count says whether it won. Compare-and-set, not ``SELECT … FOR UPDATE`` then ``UPDATE``: one statement and one
round trip, no row lock held across the network between a read and a write, and the same SQL on both backends.
It holds under concurrent hosts because of how each backend runs an UPDATE: SQLite lets one writer at a time;
PostgreSQL (READ COMMITTED) makes a second UPDATE of the same row wait for the first to commit and then evaluates
its WHERE again on the row as the first left it, so the second finds the lease taken and changes nothing.

The times a lease is compared with and stamped with come from one clock for every host: PostgreSQL's own
(``statement_timestamp()`` in UTC), so a host whose clock runs ahead cannot take a live lease early; SQLite's
ledger is one host's, which uses its own clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from onprem.finisher.ledger.models import WorkRow, utcnow

#: a time the database computes, or this host's (SQLite)
Clock = sa.ColumnElement[datetime] | datetime


def database_clock(dialect_name: str) -> Clock:
    """Now, in naive UTC, on the clock every host of this ledger shares."""
    if dialect_name == "postgresql":
        return sa.func.timezone("UTC", sa.func.statement_timestamp(), type_=sa.DateTime)
    return utcnow()


def _plus(now: Clock, ttl_s: float) -> Clock:
    if isinstance(now, datetime):
        return now + timedelta(seconds=ttl_s)
    return now + sa.literal(timedelta(seconds=ttl_s), sa.Interval)


def acquire(idempotency_key: str, owner: str, ttl_s: float, now: Clock) -> sa.Update:
    """Take the lease when it is free, expired, or already ``owner``'s."""
    return (sa.update(WorkRow)
            .where(WorkRow.idempotency_key == idempotency_key)
            .where(sa.or_(WorkRow.lease_owner.is_(None), WorkRow.lease_expires_at < now,
                          WorkRow.lease_owner == owner))
            .values(lease_owner=owner, lease_heartbeat_at=now, lease_expires_at=_plus(now, ttl_s))
            .execution_options(synchronize_session=False))


def renew(idempotency_key: str, owner: str, ttl_s: float, now: Clock) -> sa.Update:
    """Extend the lease while ``owner`` still holds it (a lease taken over by another host is not taken back)."""
    return (sa.update(WorkRow)
            .where(WorkRow.idempotency_key == idempotency_key, WorkRow.lease_owner == owner)
            .values(lease_heartbeat_at=now, lease_expires_at=_plus(now, ttl_s))
            .execution_options(synchronize_session=False))


def release(idempotency_key: str, owner: str) -> sa.Update:
    """Give the lease up, if ``owner`` still holds it."""
    return (sa.update(WorkRow)
            .where(WorkRow.idempotency_key == idempotency_key, WorkRow.lease_owner == owner)
            .values(lease_owner=None, lease_heartbeat_at=None, lease_expires_at=None)
            .execution_options(synchronize_session=False))
