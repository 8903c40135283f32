"""The pinned S3 object as a byte source (``debag.byte_source.ByteSource``): ranged GETs, about 1 MiB at a time.

Every GET carries ``IfMatch`` (the pinned ETag) and ``VersionId``: S3 answers 412 when the object was
overwritten, so bytes of two versions are never mixed (ObjectChanged). A range longer than ``part_size`` is read
as consecutive GETs of at most ``part_size`` (a long member never holds one connection for its whole length).
A transient failure (connection reset, short body, 5xx after botocore's retries) is retried from the byte reached,
``attempts`` times per GET; the reader never sees a byte twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onprem.finisher.errors import TransferError
from onprem.finisher.fetch.request import DownloadIdentity, FetchRequest
from onprem.finisher.fetch.s3 import CHUNK_SIZE, translate_error

logger = logging.getLogger(__name__)

#: errno values of a connection that broke mid-body (reset, timed out, broken pipe): transient
_BROKEN_CONNECTION = (104, 110, 32)


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
                body.close()
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
        kwargs: dict[str, Any] = {"Bucket": pinned.bucket, "Key": pinned.key, "IfMatch": pinned.etag,
                                  "Range": f"bytes={start}-{end - 1}"}
        if pinned.version_id:
            kwargs["VersionId"] = pinned.version_id
        try:
            return self.s3_client.get_object(**kwargs)["Body"]
        except ClientError as err:
            raise translate_error(err, self.request, what) from err
