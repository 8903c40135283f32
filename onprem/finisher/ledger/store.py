"""The ledger: one row per work and object version (its idempotency key), its phase, history, errors and lease.

SQLite in the state directory by default (WAL, busy timeout); PostgreSQL (``postgresql+psycopg://…``) for a
ledger shared by several finisher hosts; anything else is refused (``ledger.engine``). The schema is at the
revision this finisher knows or the ledger is not opened (``ledger.schema``). Restores requested by the CLI before
any message exists live in ``restore_requests`` (keyed by bucket and key) and are joined to works by bucket and key.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from contract import RestoredWork
from onprem.finisher.errors import LedgerUnavailable
from onprem.finisher.ledger import backlog, leases, schema
from onprem.finisher.ledger.engine import (
    DATABASE_ERRORS,
    DEFAULT_LOCK_TIMEOUT_S,
    LedgerCommitUnknown,
    LedgerConnectionLost,
    driver_reason,
    is_transient,
    ledger_location,
    make_engine,
    retry_delays,
    unavailable,
)
from onprem.finisher.ledger.models import (
    PHASE_COLUMNS,
    PHASES,
    Event,
    Phase,
    WorkRecord,
    WorkRow,
    naive_utc,
    snapshot,
    utcnow,
)
from onprem.finisher.ledger.rows import history_event, new_work_row, restore_request_list, upsert_restore_request

__all__ = ["PHASES", "Event", "Ledger", "LedgerUnavailable", "Phase", "WorkRecord", "ingest_key"]

logger = logging.getLogger(__name__)
_P = ParamSpec("_P")
_R = TypeVar("_R")
#: the longest work RID a rejected message's row keeps (the column's width; a server database enforces it)
_RID_WIDTH = WorkRow.__table__.c.work_rid.type.length


def _retried(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """The ledger call run again while its server is away (a restart, a failover): backoff from 50 ms doubling to
    2 s, within the ledger's ``lock_timeout_s``; then the LedgerConnectionLost of the last attempt. A call lost at
    COMMIT is run again too: the ones that append to a history have read the row back first (``_appending``)."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        ledger: Ledger = args[0]  # type: ignore[assignment]
        for attempt, delay in enumerate(retry_delays(ledger.lock_timeout_s), start=1):
            try:
                return method(*args, **kwargs)
            except LedgerConnectionLost as err:
                logger.warning("ledger connection lost, attempt %d, again in %.2f s: %s", attempt, delay, err)
                time.sleep(delay)
        return method(*args, **kwargs)

    return call


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
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._open()
        except LedgerUnavailable:
            self.engine.dispose()
            raise

    @_retried
    def _open(self) -> None:
        try:
            schema.prepare(self.engine, ledger_location(self.url))
            # a read-only or corrupt database can pass the revision check: one read of a table proves it opens
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT count(*) FROM works")).scalar()
        except DATABASE_ERRORS as err:
            raise self._named(err) from err

    def close(self) -> None:
        self.engine.dispose()

    @_retried
    def check_writable(self) -> None:
        """LedgerUnavailable unless a write transaction can start now (read-only file or folder, a held lock)."""
        try:
            with self.engine.begin() as connection:
                # a write that changes nothing still needs the write lock and a writable file
                connection.execute(sa.update(WorkRow).where(sa.false()).values(phase=WorkRow.phase))
        except DATABASE_ERRORS as err:
            raise self._named(err) from err

    def _named(self, err: BaseException) -> LedgerUnavailable:
        if is_transient(self.engine, err):
            return LedgerConnectionLost(ledger_location(self.url), driver_reason(err))
        return unavailable(self.url, err, self.lock_timeout_s)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction. A server lost before COMMIT is LedgerConnectionLost (nothing written: ``_retried``
        runs the call again); lost during COMMIT, LedgerCommitUnknown (written or not: see ``_appending``)."""
        with self._sessions() as session:
            try:
                yield session
                session.flush()
            except IntegrityError:
                raise  # a constraint, not an unusable database: callers handle it (register's insert race)
            except DATABASE_ERRORS as err:
                raise self._named(err) from err
            try:
                session.commit()
            except DATABASE_ERRORS as err:
                named = unavailable(self.url, err, self.lock_timeout_s)
                if is_transient(self.engine, err):
                    named = LedgerCommitUnknown(named.location, f"connection lost at commit, outcome unknown: "
                                                                f"{named.reason}")
                raise named from err

    def _appending(self, idempotency_key: str, entry: dict[str, Any], change: Callable[[WorkRow], bool], *,
                   row_of: Callable[[Session], WorkRow] | None = None) -> WorkRecord:
        """One transaction that changes the work's row and, when ``change`` says so, appends ``entry`` to its
        history. Its COMMIT lost with the connection, the row is read back once the server answers: the entry
        there, the call is done; not there, nothing was written and ``_retried`` runs the call again. The history
        gains the entry once, whichever way the COMMIT went."""
        try:
            with self._session() as session:
                row = row_of(session) if row_of else self._row(session, idempotency_key)
                if change(row):
                    row.history = [*row.history, entry]
                return snapshot(row)
        except LedgerCommitUnknown as lost:
            try:
                record = self.get(idempotency_key)
            except LedgerConnectionLost as gone:
                raise LedgerUnavailable(gone.location, f"{lost.reason}; not back within {self.lock_timeout_s:g} s "
                                                       f"to read it back: {gone.reason}") from gone
            written = record is not None and any(
                seen.get("at") == entry["at"] and seen.get("event") == entry["event"] for seen in record.history)
            logger.warning("%s: the connection was lost at the COMMIT of %s; read back: %s",
                           record.work_rid if record else idempotency_key, entry["event"],
                           "written" if written else "not written, so run again")
            if written:
                return record  # type: ignore[return-value]
            raise LedgerConnectionLost(lost.location, f"{lost.reason} (read back: not written)") from lost

    def _row(self, session: Session, idempotency_key: str) -> WorkRow:
        row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == idempotency_key)).one_or_none()
        if row is None:
            raise KeyError(f"no ledger row for idempotency key {idempotency_key}")
        return row

    # --- works ------------------------------------------------------------------------------------------
    @_retried
    def register(self, work: RestoredWork, body: str, *, message_id: str | None = None) -> WorkRecord:
        """The row of ``work`` (created on first sight, linked to a CLI restore request of the same object)."""
        for _ in range(2):
            try:
                with self._session() as session:
                    row = session.scalars(
                        sa.select(WorkRow).where(WorkRow.idempotency_key == work.idempotency_key)).one_or_none()
                    if row is None:
                        row = new_work_row(session, work, body, message_id)
                    else:
                        row.message_body, row.updated_at, seen = body, utcnow(), naive_utc(work.restore_expiry)
                        row.restore_expiry = max(filter(None, (seen, row.restore_expiry)), default=None)
                        row.hops = max(row.hops, work.continuation.hop if work.continuation else 0)
                    return snapshot(row)
            except IntegrityError:
                continue  # another finisher inserted it between our select and insert
        return self.get(work.idempotency_key)  # type: ignore[return-value]

    @_retried
    def register_ingest(self, idempotency_key: str, work_rid: str, path: str, size: int) -> WorkRecord:
        with self._session() as session:
            row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == idempotency_key)).one_or_none()
            if row is None:
                now = utcnow()
                row = WorkRow(idempotency_key=idempotency_key, work_rid=work_rid, source="ingest", key=path,
                              size=size, phase=Phase.RECEIVED, created_at=now, updated_at=now,
                              history=[history_event(Phase.RECEIVED, path=path)], attempts=0, hops=0)
                session.add(row)
                session.flush()
            return snapshot(row)

    @_retried
    def record_rejected(self, body: str, work_rid: str | None, cause: str, message: str) -> WorkRecord:
        """A message that is not a valid RestoredWork: kept under a key derived from its body."""
        key = "rejected:" + hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()[:64]

        def row_of(session: Session) -> WorkRow:
            row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == key)).one_or_none()
            if row is None:
                now = utcnow()
                row = WorkRow(idempotency_key=key, work_rid=(work_rid or "-")[:_RID_WIDTH], source="rejected",
                              message_body=body,
                              phase=Phase.FAILED, created_at=now, updated_at=now, history=[], attempts=0, hops=0)
                session.add(row)
            return row

        def change(row: WorkRow) -> bool:
            row.last_cause, row.last_error, row.updated_at = cause, message, utcnow()
            row.attempts += 1
            return True

        return self._appending(key, history_event(Phase.FAILED, cause=cause, error=message, permanent=True),
                               change, row_of=row_of)

    @_retried
    def get(self, idempotency_key: str) -> WorkRecord | None:
        with self._session() as session:
            row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == idempotency_key)).one_or_none()
            return snapshot(row) if row else None

    @_retried
    def advance(self, idempotency_key: str, phase: Phase, **details: Any) -> WorkRecord:
        """Record that ``phase`` was reached (its timestamp, the current phase, a history entry)."""

        def change(row: WorkRow) -> bool:
            now = utcnow()
            if phase in PHASE_COLUMNS:
                setattr(row, f"{phase}_at", now)
            row.phase, row.updated_at = phase, now
            if phase == Phase.SYNCED:
                row.last_error = row.last_cause = None
            return True

        return self._appending(idempotency_key, history_event(phase, **details), change)

    @_retried
    def note(self, idempotency_key: str, event: str, **details: Any) -> WorkRecord:
        """A history entry that does not change the phase (duplicate, released, handed_on, restore_reissued …)."""

        def change(row: WorkRow) -> bool:
            row.updated_at, row.last_cause, row.last_error = utcnow(), *row.causes_after_note(event, details)
            if event == Event.HANDED_ON:
                row.hops = int(details.get("hop", row.hops + 1))
            if "restore_expiry" in details and details["restore_expiry"] is not None:
                row.restore_expiry = naive_utc(datetime.fromisoformat(str(details["restore_expiry"])))
            return True

        return self._appending(idempotency_key, history_event(event, **details), change)

    @_retried
    def fail(self, idempotency_key: str, cause: str, message: str, *, permanent: bool) -> WorkRecord:
        """Record a failed attempt; a permanent one moves the work to phase ``failed``.

        A work already synced stays synced: an error after the archive has it (lost lease, throttled delete) is
        not a failure of the work and is not recorded as one.
        """
        entry = history_event(Phase.FAILED if permanent else Event.RETRY, cause=cause, error=message)

        def change(row: WorkRow) -> bool:
            if row.phase == Phase.SYNCED:
                return False
            row.attempts += 1
            row.last_cause, row.last_error, row.updated_at = cause, message, utcnow()
            if permanent:
                row.phase = Phase.FAILED
            entry["attempt"] = row.attempts
            return True

        return self._appending(idempotency_key, entry, change)

    @_retried
    def reset_for_retry(self, idempotency_key: str) -> WorkRecord:
        """``finisher retry``: a failed work goes back to ``received`` (its message body is sent again)."""
        def change(row: WorkRow) -> bool:
            if row.phase == Phase.FAILED:
                row.phase = Phase.RECEIVED
            row.updated_at = utcnow()
            return True

        return self._appending(idempotency_key, history_event(Event.REQUEUED, by="cli"), change)

    @_retried
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
    # the statements and why they hold under concurrent hosts: ledger/leases.py (compare-and-set UPDATEs)
    @_retried
    def acquire_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool:
        """Take the work's lease when it is free, expired or already ours (one compare-and-set UPDATE); an
        attempt run again after a lost connection finds the lease ours if the first one had committed."""
        with self._session() as session:
            now = leases.database_clock(self.engine.dialect.name)
            return session.execute(leases.acquire(idempotency_key, owner, ttl_s, now)).rowcount == 1

    @_retried
    def renew_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool:
        """Extend our lease; False once another finisher holds it (the work is cancelled then)."""
        with self._session() as session:
            now = leases.database_clock(self.engine.dialect.name)
            return session.execute(leases.renew(idempotency_key, owner, ttl_s, now)).rowcount == 1

    @_retried
    def release_lease(self, idempotency_key: str, owner: str) -> None:
        with self._session() as session:
            session.execute(leases.release(idempotency_key, owner))

    # --- the backlog index's reads (ledger/backlog.py's queries), waiting for a server away like every call -
    @_retried
    def queued_works(self, now: datetime, stale_after: timedelta) -> list[backlog.QueuedWork]:
        try:
            return backlog.queued_works(self.engine, now, stale_after)
        except DATABASE_ERRORS as err:
            raise self._named(err) from err

    @_retried
    def synced_per_second(self, now: datetime, window: timedelta) -> float | None:
        try:
            return backlog.synced_per_second(self.engine, now, window)
        except DATABASE_ERRORS as err:
            raise self._named(err) from err

    # --- restore requests -------------------------------------------------------------------------------
    @_retried
    def record_restore_request(self, *, work_rid: str, bucket: str, key: str, tier: str, days: int,
                               collection: str | None = None, region: str | None = None, size: int | None = None,
                               status: str = "requested", eta_at: datetime | None = None,
                               estimated_cost_usd: float | None = None) -> None:
        """Insert or refresh the restore request of ``bucket/key`` (and note it on the work's rows, if any)."""
        with self._session() as session:
            upsert_restore_request(
                session, work_rid=work_rid, bucket=bucket, key=key, tier=tier, days=days, collection=collection,
                region=region, size=size, status=status, eta_at=eta_at, estimated_cost_usd=estimated_cost_usd)

    @_retried
    def restore_requests(self, *, pending_only: bool = False) -> list[dict[str, Any]]:
        with self._session() as session:
            return restore_request_list(session, pending_only=pending_only)
