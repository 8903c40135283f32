"""The operator's jobs behind the CLI: plan restores (located, estimated: nothing spent) and submit them, read the
ledger's status and expiry horizon, requeue a work. The CLI formats what these return."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from contract import S3ErrorResponse, message_attributes, parse_message
from onprem.finisher.fetch.restore import (
    Estimate,
    ObjectLocation,
    check_restore_head,
    estimate,
    eta_at,
    locate,
    request_restore,
)
from onprem.finisher.ledger.models import WorkRecord
from onprem.finisher.ledger.store import Ledger, Phase
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.settings import Settings
from onprem.finisher.work.stages import Fetched

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestorePlan:
    """What ``request-restore`` found before spending anything: a row per target (located, its restore state,
    for the archived ones their own estimate) and the total estimate of the objects that need a request."""

    tier: str
    days: int
    rows: list[dict[str, Any]]
    to_request: list[tuple[ObjectLocation, dict[str, Any]]]
    total: Estimate

    def over(self, max_cost_usd: float) -> str | None:
        """Why the plan is refused under ``max_cost_usd``; None when its total is within it."""
        if self.total.cost_usd <= max_cost_usd:
            return None
        return (f"refused: the estimate (${self.total.cost_usd:.4f} for {self.total.objects} object(s)) is above "
                f"the cap of ${max_cost_usd:.4f}; nothing requested (raise it with --max-cost or "
                f"FINISHER_RESTORE_MAX_COST)")

    def report(self, *, dry_run: bool) -> dict[str, Any]:
        quote = self.total
        return {"tier": self.tier, "days": self.days, "dry_run": dry_run,
                "estimate_text": f"estimate: {quote.describe()}",
                "estimate": {"objects": quote.objects, "total_bytes": quote.total_bytes, "cost_usd": quote.cost_usd,
                             "eta_hours": quote.eta_hours, "prices_indicative": True},
                "objects": self.rows}


def plan_restores(settings: Settings, clients: AwsClients, targets: list[str], *,
                  collection: str | None) -> RestorePlan:
    """Locate each target (HEAD), read its restore state and estimate what a request would cost; requests nothing.

    Each row needing a request has ``outcome`` ``to_request`` and its own ``cost_usd``/``eta_hours``.
    """
    tier, days, prices = settings.restore.tier, settings.restore.days, settings.restore.prices

    def head(region: str, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(clients.s3(region).head_object(Bucket=bucket, Key=key))
        except ClientError as err:
            reply = S3ErrorResponse.of(err.response)
            if reply.missing or reply.forbidden:  # 403: missing, or a key outside the policy (no s3:ListBucket)
                return None
            raise

    rows: list[dict[str, Any]] = []
    to_request = []
    for target in targets:
        location = locate(target, settings.environment, head, collection)
        if location is None:
            rows.append({"work_rid": target, "outcome": "not_found"})
            continue
        state = check_restore_head(clients.s3(location.region), location.bucket, location.key)
        row = {"work_rid": location.work_rid, "bucket": location.bucket, "key": location.key,
               "region": location.region, "size": location.size,
               "state": "archived" if state.status == "expired" else state.status,
               "restore_expiry": state.expiry.isoformat() if state.expiry else None}
        if state.status == "expired":
            one = estimate([location.size], tier, prices)
            row.update(outcome="to_request", tier=tier, cost_usd=one.cost_usd, eta_hours=one.eta_hours)
            to_request.append((location, row))
        else:
            row["outcome"] = {"available": "already_restored", "in_progress": "already_in_progress",
                              "not_archived": "not_archived"}[state.status]
        rows.append(row)
    total = estimate([loc.size for loc, _ in to_request], tier, prices)
    return RestorePlan(tier, days, rows, to_request, total)


def submit_restores(settings: Settings, clients: AwsClients, ledger: Ledger, plan: RestorePlan) -> None:
    """Request each restore of ``plan`` (its row's ``outcome`` becomes ``requested`` or ``already_in_progress``)
    and record it in the ledger with its estimate."""
    prices = settings.restore.prices
    for location, row in plan.to_request:
        row["outcome"] = request_restore(clients.s3(location.region), location.bucket, location.key, plan.tier,
                                         plan.days, work_rid=location.work_rid)
        ledger.record_restore_request(work_rid=location.work_rid, bucket=location.bucket, key=location.key,
                                      tier=plan.tier, days=plan.days, collection=location.collection,
                                      region=location.region, size=location.size,
                                      eta_at=eta_at(plan.tier, prices), estimated_cost_usd=row["cost_usd"])
        logger.info("%s: restore requested (%s, %d days): %s", location.work_rid, plan.tier, plan.days,
                    row["outcome"], extra={"work_rid": location.work_rid})


def status_document(ledger: Ledger, rids: list[str], phase: Phase | None) -> dict[str, Any]:
    """Each work's row with its history, and ``fetched``: its last ``downloaded`` entry read in today's shape (the
    object's key, size, segments resumed, checksum verified), also when an older finisher wrote it."""
    works = [{**r.as_json(), "fetched": _fetched_json(r)} for r in ledger.works(rids or None, phase)]
    pending = [r for r in ledger.restore_requests(pending_only=True) if not rids or r["work_rid"] in rids]
    if phase and phase != Phase.RESTORE_REQUESTED:
        pending = []
    return {"works": works, "pending_restores": pending}


def _fetched_json(record: WorkRecord) -> dict[str, Any] | None:
    """The last ``downloaded`` entry as ``Fetched`` reads it (None: nothing fetched yet)."""
    entry = next((e for e in reversed(record.history) if e.get("event") == Phase.DOWNLOADED), None)
    return Fetched.from_detail(entry).to_detail() if entry else None


def expiring_works(settings: Settings, ledger: Ledger, now: datetime | None = None) -> dict[str, Any]:
    """Works not yet synced whose restored copy expires within ``expiring_within_hours``."""
    now = now or datetime.now(UTC)
    horizon = (now + timedelta(hours=settings.restore.expiring_within_hours)).replace(tzinfo=None)
    works = [r.as_json() for r in ledger.works()
             if r.phase != Phase.SYNCED and r.restore_expiry is not None and r.restore_expiry <= horizon]
    return {"works": sorted(works, key=lambda w: w["restore_expiry"]), "pending_restores": [],
            "horizon": horizon.replace(tzinfo=UTC).isoformat()}


def requeue_work(settings: Settings, clients: AwsClients, ledger: Ledger, rid: str) -> str:
    """Send the stored message body of ``rid``'s latest ledger row to its region's queue again."""
    record = ledger.latest_for_rid(rid)
    if record is None or not record.message_body or record.source != "queue":
        raise LookupError(f"{rid}: no queued work with a stored message in the ledger")
    work = parse_message(record.message_body)
    region = next((r for r in settings.environment.regions if r.region == work.region), None)
    if region is None:
        raise LookupError(f"{rid}: region {work.region} is not in environment {settings.environment.name}")
    queue = WorkQueue(clients.client("sqs", region.region), region.region, region.queue_name, region.dlq_name)
    fresh = work.model_copy(update={"continuation": None}) if record.phase == Phase.FAILED else work
    message_id = queue.send(fresh.to_body(), message_attributes(fresh))
    ledger.reset_for_retry(record.idempotency_key)
    return message_id
