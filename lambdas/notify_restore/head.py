"""Optional HEAD of the restored object (``HEAD_OBJECT=true``): confirm the restore finished, pick up checksums."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from contract.restored_work import normalize_etag
from lambdas.notify_restore.errors import RestoredObjectChanged, RestoreStillOngoing
from lambdas.notify_restore.events import RestoreCompletion

_ONGOING_RE = re.compile(r'ongoing-request="(?P<ongoing>true|false)"')
_EXPIRY_RE = re.compile(r'expiry-date="(?P<expiry>[^"]+)"')


@dataclass(frozen=True)
class HeadFacts:
    """What HEAD adds to the event: the stored checksums and the restored copy's expiry."""

    restore_expiry: datetime | None = None
    storage_class: str | None = None
    checksum_sha256: str | None = None
    checksum_crc64nvme: str | None = None


def head_restored_object(s3_client: Any, completion: RestoreCompletion, work_rid: str) -> HeadFacts:
    """HEAD the object version (checksums requested) with a client of the bucket's region."""
    params: dict[str, str] = {"Bucket": completion.bucket, "Key": completion.key, "ChecksumMode": "ENABLED"}
    if completion.version_id:
        params["VersionId"] = completion.version_id
    return head_facts(s3_client.head_object(**params), completion, work_rid)


def head_facts(response: Mapping[str, Any], completion: RestoreCompletion, work_rid: str) -> HeadFacts:
    """Interpret a HeadObject response (pure).

    Raises RestoreStillOngoing while ``ongoing-request="true"`` (so the event is retried) and
    RestoredObjectChanged when the ETag or size is not the one the event announced.
    """
    where = f"{work_rid}: s3://{completion.bucket}/{completion.key}"
    restore = str(response.get("Restore") or "")
    ongoing = _ONGOING_RE.search(restore)
    if ongoing and ongoing.group("ongoing") == "true":
        raise RestoreStillOngoing(f"{where}: HEAD says the restore is still ongoing — retried later")
    etag = normalize_etag(str(response.get("ETag", "")))
    if etag and etag != normalize_etag(completion.etag):
        raise RestoredObjectChanged(f"{where}: ETag is now {etag}, the event announced {completion.etag}")
    size = response.get("ContentLength")
    if size is not None and int(size) != completion.size:
        raise RestoredObjectChanged(f"{where}: size is now {size}, the event announced {completion.size}")
    expiry = _EXPIRY_RE.search(restore)
    sha256 = response.get("ChecksumSHA256")
    # a multipart upload's composite SHA-256 ("…-N") is not the digest of the whole object: not usable as one
    if sha256 and (response.get("ChecksumType") == "COMPOSITE" or "-" in str(sha256)):
        sha256 = None
    return HeadFacts(
        restore_expiry=_http_date(expiry.group("expiry")) if expiry else None,
        storage_class=response.get("StorageClass"),
        checksum_sha256=sha256 or None,
        checksum_crc64nvme=response.get("ChecksumCRC64NVME") or None,
    )


def _http_date(text: str) -> datetime | None:
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
