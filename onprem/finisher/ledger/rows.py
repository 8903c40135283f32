"""The rows the ledger writes beyond a phase change: a work's first row, a history entry, a restore request.

Functions of an open session (``Ledger`` owns the transactions, their errors and their retries); they import
only the models, so the ledger's entry stays one step from the shared base.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from contract import RestoredWork
from onprem.finisher.ledger.models import Phase, RestoreRequestRow, WorkRow, naive_utc, utcnow


def history_event(event: str, **details: Any) -> dict[str, Any]:
    """One history entry: when, what, and the details that are not None."""
    return {"at": utcnow().replace(tzinfo=UTC).isoformat(), "event": event,
            **{k: v for k, v in details.items() if v is not None}}


def new_work_row(session: Session, work: RestoredWork, body: str, message_id: str | None) -> WorkRow:
    """The row of a work seen for the first time, linked to the CLI's restore request of the same object."""
    now = utcnow()
    request = session.scalars(sa.select(RestoreRequestRow).where(
        RestoreRequestRow.bucket == work.bucket, RestoreRequestRow.key == work.key)).one_or_none()
    history = []
    if request is not None:
        history.append(history_event(Phase.RESTORE_REQUESTED, tier=request.tier, days=request.days,
                                     at_request=request.requested_at.isoformat()))
        request.status = "processed"
    history.append(history_event(Phase.RECEIVED, message_id=message_id, source_event_id=work.source_event_id))
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


def upsert_restore_request(session: Session, *, work_rid: str, bucket: str, key: str, tier: str, days: int,
                           collection: str | None, region: str | None, size: int | None, status: str,
                           eta_at: datetime | None, estimated_cost_usd: float | None) -> None:
    """Insert or refresh the restore request of ``bucket/key``, and note it on the work's rows, if any."""
    now = utcnow()
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


def restore_request_list(session: Session, *, pending_only: bool) -> list[dict[str, Any]]:
    """The restore requests by work RID (those not yet matched by a message, with ``pending_only``)."""
    query = sa.select(RestoreRequestRow).order_by(RestoreRequestRow.work_rid)
    if pending_only:
        query = query.where(RestoreRequestRow.status != "processed")
    return [{"work_rid": r.work_rid, "bucket": r.bucket, "key": r.key, "collection": r.collection,
             "region": r.region, "size": r.size, "tier": r.tier, "days": r.days, "status": r.status,
             "times_requested": r.times_requested, "requested_at": r.requested_at,
             "eta_at": r.eta_at, "estimated_cost_usd": r.estimated_cost_usd}
            for r in session.scalars(query)]
