"""The ledger: one row per work and object version (its idempotency key), its phase, history, errors and lease.

SQLite in the state directory by default (WAL, busy timeout), any SQLAlchemy URL for a server database shared by
several finishers. Restores requested by the CLI before any message exists live in ``restore_requests`` (keyed
by bucket and key) and are joined to works by bucket and key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from contract import RestoredWork
from onprem.finisher.errors import LedgerUnavailable
from onprem.finisher.ledger.engine import (
    DATABASE_ERRORS,
    DEFAULT_LOCK_TIMEOUT_S,
    _switch_to_wal,
    make_engine,
    unavailable,
)
from onprem.finisher.ledger.models import (
    PHASE_COLUMNS,
    PHASES,
    Base,
    Event,
    Phase,
    RestoreRequestRow,
    WorkRecord,
    WorkRow,
    naive_utc,
    snapshot,
    utcnow,
)

__all__ = ["PHASES", "Event", "Ledger", "LedgerUnavailable", "Phase", "WorkRecord", "_switch_to_wal",
           "ingest_key", "make_engine", "utcnow"]

_CREATE_ATTEMPTS = 5


def _maybe_a_create_race(err: BaseException) -> bool:
    """Two finishers creating the tables at once: 'table … already exists' (a lock already waited its timeout)."""
    return "already exists" in str(getattr(err, "orig", None) or err)


def _event(event: str, **details: Any) -> dict[str, Any]:
    return {"at": utcnow().replace(tzinfo=UTC).isoformat(), "event": event,
            **{k: v for k, v in details.items() if v is not None}}


def ingest_key(path: str, size: int, mtime_ns: int) -> str:
    """The idempotency key of a local zip fed with ``finisher ingest``."""
    return "ingest:" + hashlib.sha256(f"{path}:{size}:{mtime_ns}".encode()).hexdigest()[:64]


class Ledger:
    """The few queries the worker and the CLI need; every method is one short transaction.

    A database that cannot be used (corrupt, read-only, locked past ``lock_timeout_s``) raises LedgerUnavailable
    from the constructor or from the method that meets it.
    """

    def __init__(self, url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.url, self.lock_timeout_s = url, lock_timeout_s
        self.engine = make_engine(url, lock_timeout_s)
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                Base.metadata.create_all(self.engine)
                # a read-only or corrupt database can pass create_all (the tables exist): one read proves it opens
                with self.engine.connect() as connection:
                    connection.execute(sa.text("SELECT count(*) FROM works")).scalar()
                break
            except DATABASE_ERRORS as err:
                # another finisher created a table between our check and our CREATE: check again (a real error
                # is named on the last attempt, or at once when it is not a race)
                if attempt == _CREATE_ATTEMPTS - 1 or not _maybe_a_create_race(err):
                    self.engine.dispose()
                    raise unavailable(url, err, lock_timeout_s) from err
                time.sleep(0.05 * (attempt + 1))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def check_writable(self) -> None:
        """LedgerUnavailable unless a write transaction can start now (read-only file or folder, a held lock)."""
        try:
            with self.engine.begin() as connection:
                # a write that changes nothing still needs the write lock and a writable file
                connection.execute(sa.update(WorkRow).where(sa.false()).values(phase=WorkRow.phase))
        except DATABASE_ERRORS as err:
            raise unavailable(self.url, err, self.lock_timeout_s) from err

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except IntegrityError:
            raise  # a constraint, not an unusable database: callers handle it (register's insert race)
        except DATABASE_ERRORS as err:
            raise unavailable(self.url, err, self.lock_timeout_s) from err

    def _row(self, session: Session, idempotency_key: str) -> WorkRow:
        row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == idempotency_key)).one_or_none()
        if row is None:
            raise KeyError(f"no ledger row for idempotency key {idempotency_key}")
        return row

    # --- works ------------------------------------------------------------------------------------------
    def register(self, work: RestoredWork, body: str, *, message_id: str | None = None) -> WorkRecord:
        """The row of ``work`` (created on first sight, linked to a CLI restore request of the same object)."""
        for _ in range(2):
            try:
                with self._session() as session:
                    row = session.scalars(
                        sa.select(WorkRow).where(WorkRow.idempotency_key == work.idempotency_key)).one_or_none()
                    if row is None:
                        row = self._new_row(session, work, body, message_id)
                    else:
                        row.message_body = body
                        row.restore_expiry = naive_utc(work.restore_expiry) or row.restore_expiry
                        row.hops = max(row.hops, work.continuation.hop if work.continuation else 0)
                    return snapshot(row)
            except IntegrityError:
                continue  # another finisher inserted it between our select and insert
        return self.get(work.idempotency_key)  # type: ignore[return-value]

    def _new_row(self, session: Session, work: RestoredWork, body: str, message_id: str | None) -> WorkRow:
        now = utcnow()
        request = session.scalars(sa.select(RestoreRequestRow).where(
            RestoreRequestRow.bucket == work.bucket, RestoreRequestRow.key == work.key)).one_or_none()
        history = []
        if request is not None:
            history.append(_event(Phase.RESTORE_REQUESTED, tier=request.tier, days=request.days,
                                  at_request=request.requested_at.isoformat()))
            request.status = "processed"
        history.append(_event(Phase.RECEIVED, message_id=message_id, source_event_id=work.source_event_id))
        row = WorkRow(
            idempotency_key=work.idempotency_key, work_rid=work.work_rid, source="queue",
            collection=work.collection, region=work.region, bucket=work.bucket, key=work.key,
            version_id=work.version_id, etag=work.etag, size=work.size, message_body=body, phase=Phase.RECEIVED,
            restore_expiry=naive_utc(work.restore_expiry),
            restore_requested_at=request.requested_at if request else None, created_at=now, updated_at=now,
            history=history, attempts=0, hops=work.continuation.hop if work.continuation else 0,
        )
        session.add(row)
        session.flush()
        return row

    def register_ingest(self, idempotency_key: str, work_rid: str, path: str, size: int) -> WorkRecord:
        with self._session() as session:
            row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == idempotency_key)).one_or_none()
            if row is None:
                now = utcnow()
                row = WorkRow(idempotency_key=idempotency_key, work_rid=work_rid, source="ingest", key=path,
                              size=size, phase=Phase.RECEIVED, created_at=now, updated_at=now,
                              history=[_event(Phase.RECEIVED, path=path)], attempts=0, hops=0)
                session.add(row)
                session.flush()
            return snapshot(row)

    def record_rejected(self, body: str, work_rid: str | None, cause: str, message: str) -> WorkRecord:
        """A message that is not a valid RestoredWork: kept under a key derived from its body."""
        key = "rejected:" + hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()[:64]
        with self._session() as session:
            row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == key)).one_or_none()
            if row is None:
                now = utcnow()
                row = WorkRow(idempotency_key=key, work_rid=work_rid or "-", source="rejected", message_body=body,
                              phase=Phase.FAILED, created_at=now, updated_at=now, history=[], attempts=0, hops=0)
                session.add(row)
            row.last_cause, row.last_error, row.updated_at = cause, message, utcnow()
            row.attempts += 1
            row.history = [*row.history, _event(Phase.FAILED, cause=cause, error=message, permanent=True)]
            session.flush()
            return snapshot(row)

    def get(self, idempotency_key: str) -> WorkRecord | None:
        with self._session() as session:
            row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == idempotency_key)).one_or_none()
            return snapshot(row) if row else None

    def advance(self, idempotency_key: str, phase: Phase, **details: Any) -> WorkRecord:
        """Record that ``phase`` was reached (its timestamp, the current phase, a history entry)."""
        with self._session() as session:
            row = self._row(session, idempotency_key)
            now = utcnow()
            if phase in PHASE_COLUMNS:
                setattr(row, f"{phase}_at", now)
            row.phase, row.updated_at = phase, now
            if phase == Phase.SYNCED:
                row.last_error = row.last_cause = None
            row.history = [*row.history, _event(phase, **details)]
            return snapshot(row)

    def note(self, idempotency_key: str, event: str, **details: Any) -> WorkRecord:
        """A history entry that does not change the phase (duplicate, released, handed_on, restore_reissued …)."""
        with self._session() as session:
            row = self._row(session, idempotency_key)
            row.updated_at = utcnow()
            if event == Event.HANDED_ON:
                row.hops = int(details.get("hop", row.hops + 1))
            if "restore_expiry" in details and details["restore_expiry"] is not None:
                row.restore_expiry = naive_utc(datetime.fromisoformat(str(details["restore_expiry"])))
            row.history = [*row.history, _event(event, **details)]
            return snapshot(row)

    def fail(self, idempotency_key: str, cause: str, message: str, *, permanent: bool) -> WorkRecord:
        """Record a failed attempt; a permanent one moves the work to phase ``failed``.

        A work already synced stays synced: an error after the archive has it (lost lease, throttled delete) is
        not a failure of the work and is not recorded as one.
        """
        with self._session() as session:
            row = self._row(session, idempotency_key)
            if row.phase == Phase.SYNCED:
                return snapshot(row)
            row.attempts += 1
            row.last_cause, row.last_error, row.updated_at = cause, message, utcnow()
            if permanent:
                row.phase = Phase.FAILED
            row.history = [*row.history, _event(Phase.FAILED if permanent else Event.RETRY, cause=cause, error=message,
                                                attempt=row.attempts)]
            return snapshot(row)

    def reset_for_retry(self, idempotency_key: str) -> WorkRecord:
        """``finisher retry``: a failed work goes back to ``received`` (its message body is sent again)."""
        with self._session() as session:
            row = self._row(session, idempotency_key)
            if row.phase == Phase.FAILED:
                row.phase = Phase.RECEIVED
            row.history = [*row.history, _event(Event.REQUEUED, by="cli")]
            row.updated_at = utcnow()
            return snapshot(row)

    def works(self, rids: list[str] | None = None, phase: Phase | None = None) -> list[WorkRecord]:
        with self._session() as session:
            query = sa.select(WorkRow).order_by(WorkRow.work_rid, WorkRow.created_at)
            if rids:
                query = query.where(WorkRow.work_rid.in_(rids))
            if phase:
                query = query.where(WorkRow.phase == phase)
            return [snapshot(row) for row in session.scalars(query)]

    def latest_for_rid(self, work_rid: str) -> WorkRecord | None:
        rows = [r for r in self.works([work_rid]) if r.source != "rejected"]
        return max(rows, key=lambda r: r.updated_at) if rows else None

    # --- leases -----------------------------------------------------------------------------------------
    def acquire_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool:
        """Take the work's lease when it is free, expired or already ours (one atomic UPDATE)."""
        now = utcnow()
        with self._session() as session:
            result = session.execute(
                sa.update(WorkRow)
                .where(WorkRow.idempotency_key == idempotency_key)
                .where(sa.or_(WorkRow.lease_owner.is_(None), WorkRow.lease_expires_at < now,
                              WorkRow.lease_owner == owner))
                .values(lease_owner=owner, lease_heartbeat_at=now, lease_expires_at=now + timedelta(seconds=ttl_s))
                .execution_options(synchronize_session=False))
            return result.rowcount == 1

    def renew_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool:
        now = utcnow()
        with self._session() as session:
            result = session.execute(
                sa.update(WorkRow)
                .where(WorkRow.idempotency_key == idempotency_key, WorkRow.lease_owner == owner)
                .values(lease_heartbeat_at=now, lease_expires_at=now + timedelta(seconds=ttl_s))
                .execution_options(synchronize_session=False))
            return result.rowcount == 1

    def release_lease(self, idempotency_key: str, owner: str) -> None:
        with self._session() as session:
            session.execute(
                sa.update(WorkRow)
                .where(WorkRow.idempotency_key == idempotency_key, WorkRow.lease_owner == owner)
                .values(lease_owner=None, lease_heartbeat_at=None, lease_expires_at=None)
                .execution_options(synchronize_session=False))

    # --- restore requests -------------------------------------------------------------------------------
    def record_restore_request(self, *, work_rid: str, bucket: str, key: str, tier: str, days: int,
                               collection: str | None = None, region: str | None = None, size: int | None = None,
                               status: str = "requested", eta_at: datetime | None = None,
                               estimated_cost_usd: float | None = None) -> None:
        """Insert or refresh the restore request of ``bucket/key`` (and note it on the work's rows, if any)."""
        now = utcnow()
        with self._session() as session:
            row = session.scalars(sa.select(RestoreRequestRow).where(
                RestoreRequestRow.bucket == bucket, RestoreRequestRow.key == key)).one_or_none()
            if row is None:
                row = RestoreRequestRow(work_rid=work_rid, bucket=bucket, key=key, times_requested=0)
                session.add(row)
            row.collection, row.region, row.size = collection or row.collection, region or row.region, size
            row.tier, row.days, row.status, row.requested_at = tier, days, status, now
            row.eta_at, row.estimated_cost_usd = naive_utc(eta_at), estimated_cost_usd
            row.times_requested = (row.times_requested or 0) + 1
            for work in session.scalars(sa.select(WorkRow).where(WorkRow.bucket == bucket, WorkRow.key == key)):
                work.restore_requested_at = now

    def restore_requests(self, *, pending_only: bool = False) -> list[dict[str, Any]]:
        with self._session() as session:
            query = sa.select(RestoreRequestRow).order_by(RestoreRequestRow.work_rid)
            if pending_only:
                query = query.where(RestoreRequestRow.status != "processed")
            return [{"work_rid": r.work_rid, "bucket": r.bucket, "key": r.key, "collection": r.collection,
                     "region": r.region, "size": r.size, "tier": r.tier, "days": r.days, "status": r.status,
                     "times_requested": r.times_requested, "requested_at": r.requested_at,
                     "eta_at": r.eta_at, "estimated_cost_usd": r.estimated_cost_usd}
                    for r in session.scalars(query)]
