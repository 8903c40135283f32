"""What the operator commands do, apart from printing: restore requests, status views, re-queue, local ingest."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from contract import message_attributes, parse_message, work_rid_from_key
from onprem.finisher.errors import FinisherError, PermanentError, UnexpectedError
from onprem.finisher.ledger import Ledger, ingest_key
from onprem.finisher.progress import make_progress
from onprem.finisher.queue import WorkQueue
from onprem.finisher.restore import check_restore_head, estimate, eta_at, locate, request_restore
from onprem.finisher.runtime import AwsClients
from onprem.finisher.settings import Settings
from onprem.finisher.stage_failures import named_failure
from onprem.finisher.stages import CancelToken, StageContext, load_stages

logger = logging.getLogger(__name__)


def request_restores(settings: Settings, clients: AwsClients, ledger: Ledger, targets: list[str], *,
                     collection: str | None, dry_run: bool) -> dict[str, Any]:
    """Locate each target (HEAD), estimate the whole request, then (unless dry-run) request what needs it."""
    tier, days, prices = settings.restore_tier, settings.restore_days, settings.restore_prices

    def head(region: str, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(clients.s3(region).head_object(Bucket=bucket, Key=key))
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
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
        if state.status in ("expired",):
            to_request.append((location, row))
        else:
            row["outcome"] = {"available": "already_restored", "in_progress": "already_in_progress",
                              "not_archived": "not_archived"}[state.status]
        rows.append(row)
    quote = estimate([loc.size for loc, _ in to_request], tier, prices)
    text = f"estimate: {quote.describe()}"
    for location, row in to_request:
        if dry_run:
            row["outcome"] = "dry_run"
            continue
        row["outcome"] = request_restore(clients.s3(location.region), location.bucket, location.key, tier, days,
                                         work_rid=location.work_rid)
        one = estimate([location.size], tier, prices)
        ledger.record_restore_request(work_rid=location.work_rid, bucket=location.bucket, key=location.key,
                                      tier=tier, days=days, collection=location.collection, region=location.region,
                                      size=location.size, eta_at=eta_at(tier, prices),
                                      estimated_cost_usd=one.cost_usd)
        logger.info("%s: restore requested (%s, %d days): %s", location.work_rid, tier, days, row["outcome"],
                    extra={"work_rid": location.work_rid})
    return {"tier": tier, "days": days, "dry_run": dry_run, "estimate_text": text,
            "estimate": {"objects": quote.objects, "total_bytes": quote.total_bytes, "cost_usd": quote.cost_usd,
                         "eta_hours": quote.eta_hours, "prices_indicative": True},
            "objects": rows}


def status_document(ledger: Ledger, rids: list[str], phase: str | None) -> dict[str, Any]:
    works = [r.as_json() for r in ledger.works(rids or None, phase)]
    pending = [r for r in ledger.restore_requests(pending_only=True) if not rids or r["work_rid"] in rids]
    if phase and phase != "restore_requested":
        pending = []
    return {"works": works, "pending_restores": pending}


def expiring_works(settings: Settings, ledger: Ledger, now: datetime | None = None) -> dict[str, Any]:
    """Works not yet synced whose restored copy expires within ``expiring_within_hours``."""
    now = now or datetime.now(UTC)
    horizon = (now + timedelta(hours=settings.expiring_within_hours)).replace(tzinfo=None)
    works = [r.as_json() for r in ledger.works()
             if r.phase not in ("synced",) and r.restore_expiry is not None and r.restore_expiry <= horizon]
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
    fresh = work.model_copy(update={"continuation": None}) if record.phase == "failed" else work
    message_id = queue.send(fresh.to_body(), message_attributes(fresh))
    ledger.reset_for_retry(record.idempotency_key)
    return message_id


def _named(err: Exception, rid: str) -> FinisherError:
    """``err`` itself when it is named; its named permanent error; else ``unexpected`` (a bug or unforeseen)."""
    if isinstance(err, FinisherError):
        return err
    named = named_failure(err, rid)
    if named is not None:
        return named
    logger.error("%s: unexpected error while ingesting", rid, exc_info=err, extra={"work_rid": rid})
    return UnexpectedError(rid, f"unexpected {type(err).__name__}: {err}")


def ingest_zip(settings: Settings, clients: AwsClients, ledger: Ledger, path: Path,
               expected_rids: frozenset[str] | None = None) -> list[str]:
    """De-bag and sync a local zip with the real stages; returns the synced work RIDs.

    ``expected_rids``: the works the zip must hold, every one of them and no other (None: the work named by the
    zip's file name alone). A zip of several works is taken only when the operator names each of them.

    A refusal is recorded in the ledger (the cause and message; phase ``failed`` unless a retry could help, e.g.
    disk full) before it is raised; an exception nothing named is recorded (phase ``failed``) and raised as
    ``unexpected``. The de-bag evidence is kept as for queued works.
    """
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    rid = work_rid_from_key(path.name)
    stat = path.stat()
    key = ingest_key(str(path), stat.st_size, stat.st_mtime_ns)
    record = ledger.register_ingest(key, rid, str(path), stat.st_size)
    if record.phase == "synced":
        logger.info("%s: %s was already ingested", rid, path, extra={"work_rid": rid})
        return [rid]
    settings.ensure_dirs()
    stages = load_stages(settings, clients.s3)
    ctx = StageContext(CancelToken(rid), lambda label: make_progress(label, rid))
    try:
        staged = (stages.debag(rid, path, key, ctx, expected_rids=expected_rids) if expected_rids
                  else stages.debag(rid, path, key, ctx))
        ledger.advance(key, "debagged", works=[{"work_rid": s.work_rid, "path": str(s.path)} for s in staged])
        for item in staged:
            synced = stages.sync(item, ctx)
            ledger.note(key, "work_synced", work_rid=item.work_rid,
                        archive_path=str(synced.archive_path) if synced.archive_path else None)
    except Exception as err:
        failure = _named(err, rid)
        # no retry loop here: an unexpected failure ends this ingest like a permanent one
        ends = isinstance(failure, (PermanentError, UnexpectedError))
        ledger.fail(key, failure.cause, str(failure), permanent=ends)
        if ends and stages.keep_evidence is not None:
            stages.keep_evidence(rid, key)
        if failure is err:
            raise
        raise failure from err
    ledger.advance(key, "synced", works=[s.work_rid for s in staged])
    return [s.work_rid for s in staged]
