"""The ledger: one row per work and object version (its idempotency key), its phase, history, errors and lease.

SQLite in the state directory by default (WAL, busy timeout), any SQLAlchemy URL for a server database shared by
several finishers. Restores requested by the CLI before any message exists live in ``restore_requests`` (keyed
by bucket and key) and are joined to works by bucket and key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from contract import RestoredWork

#: the milestones of a work, in order; each has a ``<phase>_at`` column
PHASES = ("restore_requested", "received", "restore_completed", "downloaded", "debagged", "synced")
FAILED = "failed"
_PHASE_COLUMNS = {"restore_requested", "restore_completed", "downloaded", "debagged", "synced"}


def utcnow() -> datetime:
    """Naive UTC: what every database stores alike."""
    return datetime.now(UTC).replace(tzinfo=None)


def _naive(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None and value.tzinfo else value


class Base(DeclarativeBase):
    pass


class WorkRow(Base):
    __tablename__ = "works"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    work_rid: Mapped[str] = mapped_column(sa.String(100), index=True)
    source: Mapped[str] = mapped_column(sa.String(16), default="queue")  # queue | ingest | rejected
    collection: Mapped[str | None] = mapped_column(sa.String(40))
    region: Mapped[str | None] = mapped_column(sa.String(40))
    bucket: Mapped[str | None] = mapped_column(sa.String(255))
    key: Mapped[str | None] = mapped_column(sa.String(1024))
    version_id: Mapped[str | None] = mapped_column(sa.String(1024))
    etag: Mapped[str | None] = mapped_column(sa.String(100))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    message_body: Mapped[str | None] = mapped_column(sa.Text)
    phase: Mapped[str] = mapped_column(sa.String(32), index=True)
    restore_expiry: Mapped[datetime | None] = mapped_column(sa.DateTime)
    restore_requested_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    restore_completed_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    downloaded_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    debagged_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    synced_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    history: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_cause: Mapped[str | None] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    hops: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(200))
    lease_heartbeat_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime)


class RestoreRequestRow(Base):
    __tablename__ = "restore_requests"
    __table_args__ = (sa.UniqueConstraint("bucket", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    work_rid: Mapped[str] = mapped_column(sa.String(100), index=True)
    collection: Mapped[str | None] = mapped_column(sa.String(40))
    region: Mapped[str | None] = mapped_column(sa.String(40))
    bucket: Mapped[str] = mapped_column(sa.String(255))
    key: Mapped[str] = mapped_column(sa.String(1024))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    tier: Mapped[str] = mapped_column(sa.String(16))
    days: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(32))  # requested | in_progress | reissued | processed
    times_requested: Mapped[int] = mapped_column(default=1)
    requested_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    eta_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    estimated_cost_usd: Mapped[float | None] = mapped_column(sa.Float)


@dataclass(frozen=True)
class WorkRecord:
    """A snapshot of one ledger row (detached from any session)."""

    idempotency_key: str
    work_rid: str
    phase: str
    source: str
    collection: str | None
    region: str | None
    bucket: str | None
    key: str | None
    version_id: str | None
    size: int | None
    message_body: str | None
    restore_expiry: datetime | None
    timestamps: dict[str, datetime | None]
    history: list[dict[str, Any]]
    last_error: str | None
    last_cause: str | None
    attempts: int
    hops: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.replace(tzinfo=UTC).isoformat() if value else None

        return {
            "work_rid": self.work_rid, "phase": self.phase, "idempotency_key": self.idempotency_key,
            "source": self.source, "collection": self.collection, "region": self.region, "bucket": self.bucket,
            "key": self.key, "version_id": self.version_id, "size": self.size,
            "restore_expiry": iso(self.restore_expiry),
            **{f"{name}_at": iso(value) for name, value in self.timestamps.items()},
            "attempts": self.attempts, "hops": self.hops, "last_cause": self.last_cause,
            "last_error": self.last_error, "lease_owner": self.lease_owner,
            "lease_expires_at": iso(self.lease_expires_at), "updated_at": iso(self.updated_at),
            "history": self.history,
        }


def _record(row: WorkRow) -> WorkRecord:
    return WorkRecord(
        idempotency_key=row.idempotency_key, work_rid=row.work_rid, phase=row.phase, source=row.source,
        collection=row.collection, region=row.region, bucket=row.bucket, key=row.key, version_id=row.version_id,
        size=row.size, message_body=row.message_body, restore_expiry=row.restore_expiry,
        timestamps={name: getattr(row, f"{name}_at") for name in sorted(_PHASE_COLUMNS)},
        history=list(row.history or []), last_error=row.last_error, last_cause=row.last_cause,
        attempts=row.attempts, hops=row.hops, lease_owner=row.lease_owner, lease_expires_at=row.lease_expires_at,
        updated_at=row.updated_at,
    )


def _event(event: str, **details: Any) -> dict[str, Any]:
    return {"at": utcnow().replace(tzinfo=UTC).isoformat(), "event": event,
            **{k: v for k, v in details.items() if v is not None}}


def ingest_key(path: str, size: int, mtime_ns: int) -> str:
    """The idempotency key of a local zip fed with ``finisher ingest``."""
    return "ingest:" + hashlib.sha256(f"{path}:{size}:{mtime_ns}".encode()).hexdigest()[:64]


def make_engine(url: str) -> sa.Engine:
    """An engine; SQLite gets WAL, a busy timeout and foreign keys on every connection."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class Ledger:
    """The few queries the worker and the CLI need; every method is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

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
                        row.restore_expiry = _naive(work.restore_expiry) or row.restore_expiry
                        row.hops = max(row.hops, work.continuation.hop if work.continuation else 0)
                    return _record(row)
            except IntegrityError:
                continue  # another finisher inserted it between our select and insert
        return self.get(work.idempotency_key)  # type: ignore[return-value]

    def _new_row(self, session: Session, work: RestoredWork, body: str, message_id: str | None) -> WorkRow:
        now = utcnow()
        request = session.scalars(sa.select(RestoreRequestRow).where(
            RestoreRequestRow.bucket == work.bucket, RestoreRequestRow.key == work.key)).one_or_none()
        history = []
        if request is not None:
            history.append(_event("restore_requested", tier=request.tier, days=request.days,
                                  at_request=request.requested_at.isoformat()))
            request.status = "processed"
        history.append(_event("received", message_id=message_id, source_event_id=work.source_event_id))
        row = WorkRow(
            idempotency_key=work.idempotency_key, work_rid=work.work_rid, source="queue",
            collection=work.collection, region=work.region, bucket=work.bucket, key=work.key,
            version_id=work.version_id, etag=work.etag, size=work.size, message_body=body, phase="received",
            restore_expiry=_naive(work.restore_expiry),
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
                              size=size, phase="received", created_at=now, updated_at=now,
                              history=[_event("received", path=path)], attempts=0, hops=0)
                session.add(row)
                session.flush()
            return _record(row)

    def record_rejected(self, body: str, work_rid: str | None, cause: str, message: str) -> WorkRecord:
        """A message that is not a valid RestoredWork: kept under a key derived from its body."""
        key = "rejected:" + hashlib.sha256(body.encode("utf-8", "replace")).hexdigest()[:64]
        with self._session() as session:
            row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == key)).one_or_none()
            if row is None:
                now = utcnow()
                row = WorkRow(idempotency_key=key, work_rid=work_rid or "-", source="rejected", message_body=body,
                              phase=FAILED, created_at=now, updated_at=now, history=[], attempts=0, hops=0)
                session.add(row)
            row.last_cause, row.last_error, row.updated_at = cause, message, utcnow()
            row.attempts += 1
            row.history = [*row.history, _event("failed", cause=cause, error=message, permanent=True)]
            session.flush()
            return _record(row)

    def get(self, idempotency_key: str) -> WorkRecord | None:
        with self._session() as session:
            row = session.scalars(sa.select(WorkRow).where(WorkRow.idempotency_key == idempotency_key)).one_or_none()
            return _record(row) if row else None

    def advance(self, idempotency_key: str, phase: str, **details: Any) -> WorkRecord:
        """Record that ``phase`` was reached (its timestamp, the current phase, a history entry)."""
        with self._session() as session:
            row = self._row(session, idempotency_key)
            now = utcnow()
            if phase in _PHASE_COLUMNS:
                setattr(row, f"{phase}_at", now)
            row.phase, row.updated_at = phase, now
            if phase == "synced":
                row.last_error = row.last_cause = None
            row.history = [*row.history, _event(phase, **details)]
            return _record(row)

    def note(self, idempotency_key: str, event: str, **details: Any) -> WorkRecord:
        """A history entry that does not change the phase (duplicate, released, handed_on, restore_reissued …)."""
        with self._session() as session:
            row = self._row(session, idempotency_key)
            row.updated_at = utcnow()
            if event == "handed_on":
                row.hops = int(details.get("hop", row.hops + 1))
            if "restore_expiry" in details and details["restore_expiry"] is not None:
                row.restore_expiry = _naive(datetime.fromisoformat(str(details["restore_expiry"])))
            row.history = [*row.history, _event(event, **details)]
            return _record(row)

    def fail(self, idempotency_key: str, cause: str, message: str, *, permanent: bool) -> WorkRecord:
        """Record a failed attempt; a permanent one moves the work to phase ``failed``."""
        with self._session() as session:
            row = self._row(session, idempotency_key)
            row.attempts += 1
            row.last_cause, row.last_error, row.updated_at = cause, message, utcnow()
            if permanent:
                row.phase = FAILED
            row.history = [*row.history, _event("failed" if permanent else "retry", cause=cause, error=message,
                                                attempt=row.attempts)]
            return _record(row)

    def reset_for_retry(self, idempotency_key: str) -> WorkRecord:
        """``finisher retry``: a failed work goes back to ``received`` (its message body is sent again)."""
        with self._session() as session:
            row = self._row(session, idempotency_key)
            if row.phase == FAILED:
                row.phase = "received"
            row.history = [*row.history, _event("requeued", by="cli")]
            row.updated_at = utcnow()
            return _record(row)

    def works(self, rids: list[str] | None = None, phase: str | None = None) -> list[WorkRecord]:
        with self._session() as session:
            query = sa.select(WorkRow).order_by(WorkRow.work_rid, WorkRow.created_at)
            if rids:
                query = query.where(WorkRow.work_rid.in_(rids))
            if phase:
                query = query.where(WorkRow.phase == phase)
            return [_record(row) for row in session.scalars(query)]

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
            row.eta_at, row.estimated_cost_usd = _naive(eta_at), estimated_cost_usd
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
