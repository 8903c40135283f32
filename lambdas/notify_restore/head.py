"""Optional HEAD of the restored object (``HEAD_OBJECT=true``): confirm the restore finished, pick up checksums."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contract import ObjectHead, StorageClass
from contract.restored_work import normalize_etag
from lambdas.notify_restore.errors import RestoredObjectChanged, RestoreStillOngoing
from lambdas.notify_restore.events import RestoreCompletion


@dataclass(frozen=True)
class HeadFacts:
    """What HEAD adds to the event: the stored checksums and the restored copy's expiry."""

    restore_expiry: datetime | None = None
    storage_class: StorageClass | str | None = None
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
    head = ObjectHead.from_response(response)  # the header read by contract.s3, as the finisher reads it
    if head.restore.ongoing:
        raise RestoreStillOngoing(f"{where}: HEAD says the restore is still ongoing — retried later")
    etag = normalize_etag(head.etag)
    if etag and etag != normalize_etag(completion.etag):
        raise RestoredObjectChanged(f"{where}: ETag is now {etag}, the event announced {completion.etag}")
    if response.get("ContentLength") is not None and head.size != completion.size:
        raise RestoredObjectChanged(f"{where}: size is now {head.size}, the event announced {completion.size}")
    sha256 = head.checksums.get("ChecksumSHA256")
    # a multipart upload's composite SHA-256 ("…-N") is not the digest of the whole object: not usable as one
    if sha256 and (head.checksums.get("ChecksumType") == "COMPOSITE" or "-" in sha256):
        sha256 = None
    return HeadFacts(
        restore_expiry=head.restore.expiry,
        storage_class=head.restore.storage_class,
        checksum_sha256=sha256 or None,
        checksum_crc64nvme=head.checksums.get("ChecksumCRC64NVME") or None,
    )
