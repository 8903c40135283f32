"""Restores: where a work is, its restore state (HEAD), (re-)requesting it, and the cost and ETA of a request.

``restore.py`` owns requesting and re-requesting; the fetch stage only reads. The worker calls
``require_restored`` before a download and ``reissue_restore`` when a restored copy has expired.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

from config.model import EnvironmentConfig
from contract import RestoredWork, staging_key_for_rid, work_rid_from_key
from onprem.finisher.errors import ObjectMissing, RestoreExpired, RestoreInProgress, TransferError

logger = logging.getLogger(__name__)

ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
#: seconds before a work whose restore is running (or was re-requested) is looked at again
RESTORE_RETRY_AFTER = 3600
_EXPIRY_RE = re.compile(r'expiry-date="([^"]+)"')

RestoreStatus = Literal["available", "in_progress", "expired", "not_archived"]


@dataclass(frozen=True)
class RestoreState:
    status: RestoreStatus
    storage_class: str | None
    size: int
    expiry: datetime | None


@dataclass(frozen=True)
class ObjectLocation:
    work_rid: str
    region: str
    bucket: str
    key: str
    collection: str
    size: int
    storage_class: str | None


@dataclass(frozen=True)
class Estimate:
    objects: int
    total_bytes: int
    tier: str
    cost_usd: float
    eta_hours: float

    def describe(self) -> str:
        return (f"{self.objects} object(s), {self.total_bytes / 1e9:.2f} GB, tier {self.tier}: about "
                f"${self.cost_usd:.4f} retrieval, ready within {self.eta_hours:g} h (prices indicative)")


class TierPrice(BaseModel):
    """Indicative Deep Archive retrieval prices (us-east-1, 2026): check the S3 pricing page before budgeting."""

    model_config = ConfigDict(frozen=True)

    per_gb_usd: float
    per_1000_requests_usd: float
    eta_hours: float

DEFAULT_PRICES = {
    "Bulk": TierPrice(per_gb_usd=0.0025, per_1000_requests_usd=0.025, eta_hours=48),
    "Standard": TierPrice(per_gb_usd=0.02, per_1000_requests_usd=0.10, eta_hours=12),
}


def parse_restore_header(header: str | None) -> tuple[bool, datetime | None]:
    """``(ongoing, expiry)`` of an ``x-amz-restore`` header (``ongoing-request="false", expiry-date="…"``)."""
    if not header:
        return False, None
    ongoing = 'ongoing-request="true"' in header
    match = _EXPIRY_RE.search(header)
    expiry = parsedate_to_datetime(match.group(1)).astimezone(UTC) if match else None
    return ongoing, expiry


def restore_state(head: dict[str, Any]) -> RestoreState:
    storage_class = head.get("StorageClass")
    ongoing, expiry = parse_restore_header(head.get("Restore"))
    size = int(head.get("ContentLength", 0))
    if storage_class not in ARCHIVE_CLASSES:
        return RestoreState("not_archived", storage_class, size, None)
    if ongoing:
        return RestoreState("in_progress", storage_class, size, None)
    if head.get("Restore"):
        return RestoreState("available", storage_class, size, expiry)
    return RestoreState("expired", storage_class, size, None)


def check_restore_head(s3_client: Any, bucket: str, key: str) -> RestoreState:
    """The restore state of the current version of ``bucket/key`` (for the CLI, before any message exists)."""
    return restore_state(s3_client.head_object(Bucket=bucket, Key=key))


def check_restore(s3_client: Any, work: RestoredWork) -> RestoreState:
    """HEAD the message's object version; ObjectMissing when it is gone, TransferError on a transient error."""
    kwargs: dict[str, Any] = {"Bucket": work.bucket, "Key": work.key}
    if work.version_id:
        kwargs["VersionId"] = work.version_id
    try:
        head = s3_client.head_object(**kwargs)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code == "InvalidObjectState":
            return RestoreState("expired", "DEEP_ARCHIVE", work.size, None)
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
            raise ObjectMissing(work.work_rid, f"s3://{work.bucket}/{work.key} does not exist") from err
        raise TransferError(work.work_rid, f"HEAD s3://{work.bucket}/{work.key} failed: {code} {err}") from err
    except BotoCoreError as err:
        raise TransferError(work.work_rid, f"HEAD s3://{work.bucket}/{work.key} failed: {err}") from err
    return restore_state(head)


def inspect(s3_client: Any, work: RestoredWork) -> tuple[RestoreState, str | None]:
    """One HEAD of the key's current version: the restore state of the message's version, and the current
    version id when it is not the message's (a late event after an overwrite). Without a version id in the
    message, the version it names is HEADed (the fetch's ETag pin guards against an overwrite)."""
    if not work.version_id:
        return check_restore(s3_client, work), None
    try:
        head = s3_client.head_object(Bucket=work.bucket, Key=work.key)
    except ClientError:
        # a delete marker is current, or HEAD of the key is refused: look at the message's version itself
        return check_restore(s3_client, work), None
    except BotoCoreError as err:
        raise TransferError(work.work_rid, f"HEAD s3://{work.bucket}/{work.key} failed: {err}") from err
    current = head.get("VersionId")
    if current and current not in ("null", work.version_id):
        return restore_state(head), str(current)
    return restore_state(head), None


def require_restored(s3_client: Any, work: RestoredWork, state: RestoreState | None = None) -> RestoreState:
    """The state when the bytes can be read now; RestoreInProgress / RestoreExpired otherwise."""
    state = state or check_restore(s3_client, work)
    where = f"s3://{work.bucket}/{work.key}"
    if state.status == "in_progress":
        raise RestoreInProgress(work.work_rid, f"restore of {where} is still in progress",
                                retry_after=RESTORE_RETRY_AFTER)
    if state.status == "expired":
        raise RestoreExpired(work.work_rid, f"{where} is in {state.storage_class} with no restored copy: the "
                                            "restore expired", retry_after=RESTORE_RETRY_AFTER)
    return state


def request_restore(s3_client: Any, bucket: str, key: str, tier: str, days: int, *,
                    version_id: str | None = None, work_rid: str | None = None) -> str:
    """RestoreObject; returns ``requested`` or ``already_in_progress`` (409 is fine, not an error)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key,
                              "RestoreRequest": {"Days": days, "GlacierJobParameters": {"Tier": tier}}}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        s3_client.restore_object(**kwargs)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code == "RestoreAlreadyInProgress":
            return "already_in_progress"
        if code in ("NoSuchKey", "404", "NoSuchVersion"):
            raise ObjectMissing(work_rid, f"s3://{bucket}/{key} does not exist: cannot restore it") from err
        raise TransferError(work_rid, f"RestoreObject s3://{bucket}/{key} failed: {code} {err}") from err
    return "requested"


def reissue_restore(s3_client: Any, work: RestoredWork, tier: str, days: int) -> str:
    outcome = request_restore(s3_client, work.bucket, work.key, tier, days, version_id=work.version_id,
                              work_rid=work.work_rid)
    logger.warning("%s: restore expired — re-requested (%s, %d days): %s", work.work_rid, tier, days, outcome,
                   extra={"work_rid": work.work_rid})
    return outcome


def estimate(sizes: Iterable[int], tier: str, prices: dict[str, TierPrice]) -> Estimate:
    sizes = list(sizes)
    price = prices[tier]
    total = sum(sizes)
    cost = total / 1e9 * price.per_gb_usd + len(sizes) / 1000 * price.per_1000_requests_usd
    return Estimate(len(sizes), total, tier, round(cost, 6), price.eta_hours)


def eta_at(tier: str, prices: dict[str, TierPrice], now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) + timedelta(hours=prices[tier].eta_hours)


def locate(rid_or_url: str, environment: EnvironmentConfig, head: Callable[[str, str, str], dict[str, Any] | None],
           collection: str | None = None) -> ObjectLocation | None:
    """Where a work is: ``s3://bucket/key`` as given, else its staging key in the collection's buckets (or all).

    ``head(region, bucket, key)`` returns the HEAD response or None when the object is not there.
    """
    if rid_or_url.startswith("s3://"):
        bucket, _, key = rid_or_url[5:].partition("/")
        region = environment.region_of_bucket(bucket)
        candidates = [(region.region, bucket, environment.bucket(bucket).collection, key)]
    else:
        pairs = (environment.buckets_of_collection(collection) if collection
                 else [(r, b) for r in environment.regions for b in r.buckets])
        candidates = [(r.region, b.name, b.collection, k) for r, b in pairs
                      for k in (staging_key_for_rid(rid_or_url), staging_key_for_rid(rid_or_url, ".zip"))]
    for region, bucket, coll, key in candidates:
        response = head(region, bucket, key)
        if response is not None:
            return ObjectLocation(work_rid_from_key(key), region, bucket, key, coll,
                                  int(response.get("ContentLength", 0)), response.get("StorageClass"))
    return None


