"""The EventBridge "Object Restore Completed" event S3 sends for a restored object, built from a real HEAD.

Same shape as ``shared/events/object-restore-completed.json``; size, ETag, version id, storage class and restore
expiry come from the object's HEAD on the (moto) bucket, so the Lambda sees what AWS would send it.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

RESTORE_COMPLETED = "Object Restore Completed"
S3_SOURCE = "aws.s3"
_ONGOING_RE = re.compile(r'ongoing-request="(?P<ongoing>true|false)"')
_EXPIRY_RE = re.compile(r'expiry-date="(?P<expiry>[^"]+)"')


class RestoreNotCompleted(RuntimeError):
    """The object has no completed restore (no ``x-amz-restore`` header, or ``ongoing-request="true"``)."""


def restore_completed_pattern(buckets: Sequence[str], key_suffixes: Sequence[str]) -> dict[str, Any]:
    """The pattern of a region's rule (as infra/cdk/constructs/restore_events.py): restores completed for keys
    ending in one of ``key_suffixes`` in that region's staging buckets."""
    return {
        "source": [S3_SOURCE],
        "detail-type": [RESTORE_COMPLETED],
        "detail": {
            "bucket": {"name": sorted(buckets)},
            "object": {"key": [{"suffix": suffix} for suffix in key_suffixes]},
        },
    }


def restore_expiry(restore_header: str | None) -> datetime:
    """The expiry of a completed restore from the ``x-amz-restore`` header; raises RestoreNotCompleted otherwise."""
    ongoing = _ONGOING_RE.search(restore_header or "")
    if ongoing is None or ongoing["ongoing"] != "false":
        raise RestoreNotCompleted(f"restore not completed (x-amz-restore: {restore_header!r})")
    expiry = _EXPIRY_RE.search(restore_header or "")
    if expiry is None:
        raise RestoreNotCompleted(f"completed restore without an expiry date (x-amz-restore: {restore_header!r})")
    return parsedate_to_datetime(expiry["expiry"]).astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def restore_completed_event(
    *, bucket: str, key: str, region: str, head: Mapping[str, Any], account: str,
    event_time: datetime | None = None, event_id: str | None = None,
) -> dict[str, Any]:
    """The event for ``bucket/key`` given its ``head_object`` response (which must show a completed restore)."""
    expiry = restore_expiry(head.get("Restore"))
    detail_object: dict[str, Any] = {
        "key": key,
        "size": int(head["ContentLength"]),
        "etag": str(head["ETag"]).strip('"'),
    }
    if head.get("VersionId") and head["VersionId"] != "null":
        detail_object["version-id"] = head["VersionId"]
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": RESTORE_COMPLETED,
        "source": S3_SOURCE,
        "account": account,
        "time": _iso(event_time or datetime.now(UTC)),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": detail_object,
            "request-id": secrets.token_hex(8).upper(),
            "requester": "s3.amazonaws.com",
            "restore-expiry-time": _iso(expiry),
            "source-storage-class": head.get("StorageClass", "STANDARD"),
        },
    }


def as_put_events_entry(event: Mapping[str, Any]) -> dict[str, Any]:
    """The PutEvents entry that makes EventBridge deliver ``event`` (its id and time are the bus's own)."""
    return {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Resources": list(event["resources"]),
        "Detail": json.dumps(event["detail"]),
    }


def as_delivered(sent: Mapping[str, Any], delivered: Mapping[str, Any]) -> dict[str, Any]:
    """The event as the rule's target receives it: the bus's id and time, the sent fields everywhere else.

    moto's bus drops ``account`` and may reorder keys; AWS keeps every field, so the sent value fills the gaps.
    """
    event = dict(sent)
    for field in ("id", "time"):
        if delivered.get(field):
            event[field] = delivered[field]
    if delivered.get("detail") != sent["detail"]:
        raise ValueError(f"the bus changed the event's detail: sent {sent['detail']!r}, "
                         f"got {delivered.get('detail')!r}")
    return event
