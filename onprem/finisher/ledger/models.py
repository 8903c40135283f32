"""The ledger's tables (SQLAlchemy 2 models) and the detached snapshot of a work row the callers get."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Phase(StrEnum):
    """A work's ``phase`` column (and the history event that reached it); stored and shown as its value."""

    RESTORE_REQUESTED = "restore_requested"
    RECEIVED = "received"
    RESTORE_COMPLETED = "restore_completed"
    DOWNLOADED = "downloaded"
    DEBAGGED = "debagged"
    SYNCED = "synced"
    FAILED = "failed"  #: a permanent failure (or a rejected message): ``finisher retry`` sends it again
    SUPERSEDED = "superseded"  #: the message named a version overwritten since: never synced, done


class Event(StrEnum):
    """A history entry that does not change the phase (``Ledger.note``, ``Ledger.fail``)."""

    RETRY = "retry"
    DUPLICATE = "duplicate"
    WORK_SYNCED = "work_synced"
    RELEASED = "released"
    HANDED_ON = "handed_on"
    RESTORE_REISSUED = "restore_reissued"
    RESTORE_WAIT = "restore_wait"
    REQUEUED = "requeued"
    HOOK_FAILED = "hook_failed"  #: the post-sync hook of a synced work failed: retried alone (last_cause)
    HOOK_OK = "hook_ok"  #: the post-sync hook of a synced work succeeded


#: the milestones of a work, in order
PHASES = (Phase.RESTORE_REQUESTED, Phase.RECEIVED, Phase.RESTORE_COMPLETED, Phase.DOWNLOADED, Phase.DEBAGGED,
          Phase.SYNCED)
#: the milestones with a ``<phase>_at`` column
PHASE_COLUMNS = frozenset(PHASES) - {Phase.RECEIVED}


def utcnow() -> datetime:
    """Naive UTC: what every database stores alike."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(value: datetime | None) -> datetime | None:
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

    def causes_after_note(self, event: str, details: dict[str, Any]) -> tuple[str | None, str | None]:
        """(last_cause, last_error) after a note: a failed post-sync hook sets them (the work stays synced,
        ``finisher status`` shows why), a hook that succeeded clears them, any other note keeps them."""
        if event == Event.HOOK_FAILED:
            return Event.HOOK_FAILED.value, str(details.get("error", ""))
        if event == Event.HOOK_OK:
            return None, None
        return self.last_cause, self.last_error


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
    phase: Phase
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


def snapshot(row: WorkRow) -> WorkRecord:
    return WorkRecord(
        idempotency_key=row.idempotency_key, work_rid=row.work_rid, phase=Phase(row.phase), source=row.source,
        collection=row.collection, region=row.region, bucket=row.bucket, key=row.key, version_id=row.version_id,
        size=row.size, message_body=row.message_body, restore_expiry=row.restore_expiry,
        timestamps={name: getattr(row, f"{name}_at") for name in sorted(PHASE_COLUMNS)},
        history=list(row.history or []), last_error=row.last_error, last_cause=row.last_cause,
        attempts=row.attempts, hops=row.hops, lease_owner=row.lease_owner, lease_expires_at=row.lease_expires_at,
        updated_at=row.updated_at,
    )
