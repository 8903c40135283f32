"""Restores: where a work is, its restore state (HEAD), (re-)requesting it, and the cost and ETA of a request.

``restore.py`` owns requesting and re-requesting; the fetch stage only reads. The worker calls ``inspect`` before
a download and ``reissue_restore`` when a restored copy has expired. The header and the storage classes are read
by ``contract.s3``, as in the Lambda.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from config.model import EnvironmentConfig
from contract import (
    ObjectHead,
    RestoredWork,
    RestoreState,
    S3ErrorCode,
    S3ErrorResponse,
    restore_state,
    staging_key_for_rid,
    work_rid_from_key,
)
from onprem.finisher.errors import ObjectMissing, TransferError
from onprem.finisher.fetch.request import FetchRequest
from onprem.finisher.fetch.s3 import head_object, object_args

logger = logging.getLogger(__name__)


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


def check_restore_head(s3_client: Any, bucket: str, key: str) -> RestoreState:
    """The restore state of the current version of ``bucket/key`` (for the CLI, before any message exists)."""
    return restore_state(s3_client.head_object(Bucket=bucket, Key=key))


def inspect(s3_client: Any, work: RestoredWork) -> tuple[ObjectHead, str | None]:
    """The attempt's one HEAD (checksums asked for): the message's version as the fetch will pin to it, and the
    current version id when it is not the message's (a late event after an overwrite: nothing to pin).

    A message with a version id HEADs the key's current version; when that is refused (a delete marker is
    current, or no s3:GetObject on the key) the message's version is HEADed instead. Without a version id the
    version the message names is HEADed, pinned by ``If-Match`` (412: ObjectChanged). Raises what
    ``fetch.s3.head_object`` raises.
    """
    request = FetchRequest.of(work)
    if not work.version_id:
        return head_object(s3_client, request), None
    try:
        head = head_object(s3_client, request, current_version=True)
    except (ObjectMissing, TransferError) as err:
        logger.debug("%s: HEAD of the current version refused (%s): the message's version is HEADed", work.work_rid,
                     err, extra={"work_rid": work.work_rid})
        return head_object(s3_client, request), None
    return head, head.version_id if head.version_id not in (None, "", "null", work.version_id) else None


def request_restore(s3_client: Any, bucket: str, key: str, tier: str, days: int, *,
                    version_id: str | None = None, work_rid: str | None = None) -> str:
    """RestoreObject; returns ``requested`` or ``already_in_progress`` (409 is fine, not an error)."""
    try:
        s3_client.restore_object(**object_args(bucket, key, version_id),
                                 RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}})
    except ClientError as err:
        reply = S3ErrorResponse.of(err.response)
        if reply.code == S3ErrorCode.RESTORE_ALREADY_IN_PROGRESS:
            return "already_in_progress"
        if reply.missing:
            raise ObjectMissing(work_rid, f"s3://{bucket}/{key} does not exist: cannot restore it") from err
        raise TransferError(work_rid, f"RestoreObject s3://{bucket}/{key} failed: {reply.describe()} {err}") from err
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
