"""The S3 calls of a fetch, with S3's answers turned into the finisher's named errors.

One HEAD per attempt (``head_object``: restore state, size, ETag, checksums, read through ``contract.s3``), made
by the worker's restore check and checked against the message (``require_pinned``). A 403 is ``ObjectMissing``
"missing or not permitted": permanent, never retried as a transfer error (the finisher has no ``s3:ListBucket``,
so S3 answers a missing key 403, not 404).

The pinned object as a byte source (``S3Source``, a ``debag.byte_source.ByteSource``): ranged GETs, each with
``IfMatch`` (the pinned ETag) and ``VersionId``: S3 answers 412 when the object was overwritten, so bytes of two
versions are never mixed (ObjectChanged). A range longer than ``part_size`` is read as consecutive GETs of at most
``part_size`` (a long member never holds one connection for its whole length). A transient failure (connection
reset, short body, 5xx after botocore's retries) is retried from the byte reached, ``attempts`` times per GET; the
reader never sees a byte twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import ObjectHead, RestoreState, RestoreStatus, S3ErrorCode, S3ErrorResponse
from contract.restored_work import normalize_etag
from onprem.finisher.errors import (
    ObjectChanged,
    ObjectMissing,
    RestoreExpired,
    RestoreInProgress,
    TransferError,
)
from onprem.finisher.fetch.request import DownloadIdentity, FetchRequest

logger = logging.getLogger(__name__)

#: bytes read from a ranged GET's body at a time
CHUNK_SIZE = 1 << 20
#: seconds before a message whose restore is still running is looked at again
RESTORE_RETRY_AFTER = 3600
#: the cause of an ObjectMissing raised on a 403: the key is missing, or outside the finisher's policy
MISSING_OR_FORBIDDEN = "object_missing_or_forbidden"
#: errno values of a connection that broke mid-body (reset, timed out, broken pipe): transient
_BROKEN_CONNECTION = (104, 110, 32)


def quoted_etag(etag: str) -> str:
    """An ETag as S3 sends it and IfMatch wants it: in double quotes."""
    return etag if etag.startswith('"') else f'"{etag}"'


def object_args(bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
    """``Bucket``, ``Key`` and, when there is one, ``VersionId``: the arguments that name one object version."""
    return {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}


def translate_error(err: ClientError, request: FetchRequest, what: str) -> Exception:
    rid, reply, where = request.work_rid, S3ErrorResponse.of(err.response), request.where
    if reply.precondition_failed:
        pinned = request.etag or "the ETag seen at HEAD"
        return ObjectChanged(rid, f"{where} no longer has {pinned} ({what}): it was overwritten")
    if reply.code == S3ErrorCode.INVALID_OBJECT_STATE:
        return RestoreExpired(rid, f"{where} is archived and its restored copy is gone ({what}): re-request it")
    version = f" version {request.version_id}" if request.version_id else ""
    if reply.forbidden:
        return ObjectMissing(rid, f"{where}{version} is missing or not permitted ({what}: 403 {reply.describe()}; "
                                  "without s3:ListBucket S3 refuses a missing key the same way)",
                             cause=MISSING_OR_FORBIDDEN)
    if reply.missing:
        return ObjectMissing(rid, f"{where}{version} does not exist ({what})")
    return TransferError(rid, f"{what} of {where} failed: {reply.describe()} {err}")


def head_object(s3_client: Any, request: FetchRequest, *, current_version: bool = False) -> ObjectHead:
    """HEAD with checksums, of the message's version pinned to its ETag (412: ObjectChanged) or, with
    ``current_version``, of the key's current version (to see whether the message's is still current).

    Raises ObjectChanged, ObjectMissing, RestoreExpired or TransferError (named from S3's answer); says nothing
    about the restore state (``require_pinned`` does).
    """
    kwargs = {**object_args(request.bucket, request.key, None if current_version else request.version_id),
              "ChecksumMode": "ENABLED"}
    if request.etag and not current_version:
        kwargs["IfMatch"] = quoted_etag(request.etag)
    try:
        return ObjectHead.from_response(s3_client.head_object(**kwargs))
    except ClientError as err:
        raise translate_error(err, request, "HEAD") from err
    except BotoCoreError as err:
        raise TransferError(request.work_rid, f"HEAD of {request.where} failed: {err}") from err


def require_restored(work_rid: str, where: str, state: RestoreState) -> RestoreState:
    """``state`` when the bytes can be read now; RestoreInProgress / RestoreExpired otherwise."""
    if state.status == RestoreStatus.IN_PROGRESS:
        raise RestoreInProgress(work_rid, f"restore of {where} is still in progress",
                                retry_after=RESTORE_RETRY_AFTER)
    if state.status == RestoreStatus.EXPIRED:
        raise RestoreExpired(work_rid, f"{where} is in {state.storage_class} with no restored copy (restore expired "
                                       "or never requested): re-request it", retry_after=RESTORE_RETRY_AFTER)
    return state


def require_pinned(request: FetchRequest, head: ObjectHead) -> ObjectHead:
    """``head`` when its bytes can be read and are the message's: restored, same ETag, version and size.

    Raises RestoreInProgress / RestoreExpired, or ObjectChanged naming what differs from the message.
    """
    rid, where = request.work_rid, request.where
    require_restored(rid, where, head.restore)
    if request.etag and head.etag and normalize_etag(head.etag) != normalize_etag(request.etag):
        raise ObjectChanged(rid, f"{where} has ETag {head.etag}, the message says {request.etag}: it was "
                                 "overwritten")
    if request.version_id and head.version_id not in (None, "null", request.version_id):
        raise ObjectChanged(rid, f"{where} HEAD saw version {head.version_id}, the message says "
                                 f"{request.version_id}")
    if request.size is not None and head.size != request.size:
        raise ObjectChanged(rid, f"{where} has {head.size} bytes, the message says {request.size}: it was "
                                 "overwritten")
    return head


def part_layout(s3_client: Any, request: FetchRequest, identity: DownloadIdentity, parts: int) -> int | None:
    """The part size of a multipart upload of ``parts`` parts when its parts are of one size (the last one
    smaller): HEAD of the first and the last part (by version: the ranges themselves are pinned to the ETag). None
    when that cannot be told."""
    kwargs = object_args(identity.bucket, identity.key, identity.version_id)
    try:
        first = int(s3_client.head_object(**kwargs, PartNumber=1)["ContentLength"])
        last = int(s3_client.head_object(**kwargs, PartNumber=parts)["ContentLength"])
    except ClientError as err:
        raise translate_error(err, request, "HEAD of a part") from err
    except (BotoCoreError, KeyError, ValueError):
        return None
    return first if first > 0 and (parts - 1) * first + last == identity.size and last <= first else None


class S3Source:
    """Byte ranges of one pinned object version, read with ranged GETs."""

    def __init__(self, s3_client: Any, request: FetchRequest, pinned: DownloadIdentity, *, attempts: int = 3) -> None:
        self.s3_client, self.request, self.pinned, self.attempts = s3_client, request, pinned, max(1, attempts)
        self.name, self.size = PurePosixPath(pinned.key).name, pinned.size
        self.identity = f"s3:{pinned.bucket}/{pinned.key}:{pinned.etag}:{pinned.version_id}:{pinned.size}"

    def read(self, start: int, end: int) -> bytes:
        return b"".join(self._get(start, end))  # one GET: a small read (the tail)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        part = max(1, self.pinned.part_size)
        for begin in range(start, end, part):
            yield from self._get(begin, min(end, begin + part))

    def _get(self, start: int, end: int) -> Iterator[bytes]:
        offset, failures = start, 0
        while offset < end:
            body = None
            what = f"GET bytes={offset}-{end - 1}"
            try:
                body = self._open(offset, end, what)
                while offset < end:
                    chunk = body.read(min(CHUNK_SIZE, end - offset))
                    if not chunk:
                        raise TransferError(self.request.work_rid, f"{what} ended at byte {offset}")
                    offset += len(chunk)
                    yield chunk
                return
            except (BotoCoreError, OSError) as err:
                if isinstance(err, OSError) and err.errno is not None and err.errno not in _BROKEN_CONNECTION:
                    raise  # a local error is not a transfer problem
                error = TransferError(self.request.work_rid, f"{what} of {self.request.where} failed: {err}")
            except TransferError as err:
                error = err
            finally:
                if body is not None:
                    body.close()
            failures += 1
            if failures >= self.attempts:
                raise error
            logger.warning("%s: %s (attempt %d/%d, resumed from byte %d)", self.request.work_rid, error.message,
                           failures, self.attempts, offset, extra={"work_rid": self.request.work_rid})

    def _open(self, start: int, end: int, what: str) -> Any:
        pinned = self.pinned
        try:
            return self.s3_client.get_object(**object_args(pinned.bucket, pinned.key, pinned.version_id),
                                             IfMatch=pinned.etag, Range=f"bytes={start}-{end - 1}")["Body"]
        except ClientError as err:
            raise translate_error(err, self.request, what) from err
