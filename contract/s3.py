"""The S3 vocabulary both sides read: the ``x-amz-restore`` header, restore state, storage classes, error codes.

Pure: it takes what boto3 hands back (a ``head_object`` response dict, a ``ClientError``'s ``.response``) and
never imports boto3, so the Lambda's asset carries it as it is. Names S3 may add later are kept as the plain
string S3 sent (a ``StorageClass`` or ``S3ErrorCode`` member when known, else ``str``): nothing is guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any


class StorageClass(StrEnum):
    """S3 storage classes (``x-amz-storage-class``; HEAD omits it for STANDARD)."""

    STANDARD = "STANDARD"
    REDUCED_REDUNDANCY = "REDUCED_REDUNDANCY"
    STANDARD_IA = "STANDARD_IA"
    ONEZONE_IA = "ONEZONE_IA"
    INTELLIGENT_TIERING = "INTELLIGENT_TIERING"
    GLACIER_IR = "GLACIER_IR"
    GLACIER = "GLACIER"
    DEEP_ARCHIVE = "DEEP_ARCHIVE"
    OUTPOSTS = "OUTPOSTS"
    SNOW = "SNOW"
    EXPRESS_ONEZONE = "EXPRESS_ONEZONE"


#: the classes whose bytes can be read only from a restored copy
ARCHIVE_CLASSES = frozenset({StorageClass.GLACIER, StorageClass.DEEP_ARCHIVE})


class S3ErrorCode(StrEnum):
    """The ``Error.Code`` values the pipeline branches on. A HEAD has no error body: botocore then gives the HTTP
    status as the code (``"404"``, ``"412"``)."""

    ACCESS_DENIED = "AccessDenied"
    ACCESS_DENIED_STATUS = "403"
    NO_SUCH_BUCKET = "NoSuchBucket"
    NO_SUCH_KEY = "NoSuchKey"
    NO_SUCH_VERSION = "NoSuchVersion"
    NOT_FOUND = "NotFound"
    NOT_FOUND_STATUS = "404"
    PRECONDITION_FAILED = "PreconditionFailed"
    PRECONDITION_FAILED_STATUS = "412"
    INVALID_OBJECT_STATE = "InvalidObjectState"
    RESTORE_ALREADY_IN_PROGRESS = "RestoreAlreadyInProgress"


_MISSING_CODES = frozenset({S3ErrorCode.NO_SUCH_KEY, S3ErrorCode.NO_SUCH_VERSION, S3ErrorCode.NOT_FOUND,
                            S3ErrorCode.NOT_FOUND_STATUS})
_PRECONDITION_CODES = frozenset({S3ErrorCode.PRECONDITION_FAILED, S3ErrorCode.PRECONDITION_FAILED_STATUS})
_FORBIDDEN_CODES = frozenset({S3ErrorCode.ACCESS_DENIED, S3ErrorCode.ACCESS_DENIED_STATUS})


class RestoreStatus(StrEnum):
    """Whether an object's bytes can be read now."""

    AVAILABLE = "available"          # a restored copy is there
    IN_PROGRESS = "in_progress"      # a restore is running
    EXPIRED = "expired"              # archived, no restored copy (expired, or never requested)
    NOT_ARCHIVED = "not_archived"    # not in an archive class: readable as it is


def storage_class_of(name: object) -> StorageClass | str | None:
    """``name`` as a StorageClass when S3 documents it, else the string as sent (None when absent or empty)."""
    if name is None or name == "":
        return None
    text = str(name)
    try:
        return StorageClass(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class RestoreState:
    """The restore side of one HEAD: storage class and what its ``x-amz-restore`` header says."""

    storage_class: StorageClass | str | None
    #: an ``x-amz-restore`` header was present (a restore was requested at some point and is not gone)
    requested: bool = False
    ongoing: bool = False
    #: when the restored copy disappears (aware, UTC); None while ongoing or when S3 sent none
    expiry: datetime | None = None

    @property
    def archived(self) -> bool:
        return self.storage_class in ARCHIVE_CLASSES

    @property
    def status(self) -> RestoreStatus:
        if not self.archived:
            return RestoreStatus.NOT_ARCHIVED
        if self.ongoing:
            return RestoreStatus.IN_PROGRESS
        return RestoreStatus.AVAILABLE if self.requested else RestoreStatus.EXPIRED


_TOKEN_RE = re.compile(r'([A-Za-z-]+)\s*=\s*"([^"]*)"')


def parse_restore_header(header: str | None, storage_class: object = None) -> RestoreState:
    """The RestoreState of an ``x-amz-restore`` header as S3 sends it: ``ongoing-request="true"`` while running,
    ``ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`` once done (spaces and case of the
    names tolerated). An expiry date that does not parse is None; ongoing is True only when S3 says ``"true"``."""
    if not header or not header.strip():
        return RestoreState(storage_class_of(storage_class))
    tokens = {name.lower(): value.strip() for name, value in _TOKEN_RE.findall(header)}
    ongoing = tokens.get("ongoing-request", "").lower() == "true"
    return RestoreState(storage_class_of(storage_class), requested=True, ongoing=ongoing,
                        expiry=None if ongoing else http_date(tokens.get("expiry-date")))


def restore_state(head: Mapping[str, Any]) -> RestoreState:
    """The RestoreState of a ``head_object`` response."""
    return parse_restore_header(head.get("Restore"), head.get("StorageClass"))


def http_date(text: str | None) -> datetime | None:
    """An HTTP date (RFC 7231) as an aware UTC datetime; None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    # "-0000" (no zone information) parses naive: S3 means UTC
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class ObjectHead:
    """What one HEAD saw of an object version: the identity a fetch pins to, its checksums, its restore state."""

    etag: str
    version_id: str | None
    size: int
    restore: RestoreState
    #: the ``Checksum*`` fields (and ``ChecksumType``) of the response, as S3 gave them
    checksums: Mapping[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_response(cls, head: Mapping[str, Any]) -> ObjectHead:
        checksums = {name: str(value) for name, value in head.items() if name.startswith("Checksum") and value}
        version = head.get("VersionId")
        return cls(etag=str(head.get("ETag", "")), version_id=str(version) if version else None,
                   size=int(head.get("ContentLength", 0)), restore=restore_state(head), checksums=checksums)


@dataclass(frozen=True)
class S3ErrorResponse:
    """The parts of a botocore ``ClientError.response`` the pipeline reads."""

    code: S3ErrorCode | str
    status: int
    message: str = ""

    @classmethod
    def of(cls, response: Mapping[str, Any]) -> S3ErrorResponse:
        """From ``err.response`` of a ``botocore.exceptions.ClientError``."""
        error = response.get("Error") or {}
        status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        text = str(error.get("Code") or "")
        try:
            code: S3ErrorCode | str = S3ErrorCode(text)
        except ValueError:
            code = text
        return cls(code, status, str(error.get("Message") or ""))

    @property
    def missing(self) -> bool:
        """The key or version does not exist (a missing bucket is not a missing object: a setting is wrong)."""
        return self.code in _MISSING_CODES or (self.status == 404 and self.code != S3ErrorCode.NO_SUCH_BUCKET)

    @property
    def forbidden(self) -> bool:
        """S3 refused the request (403 AccessDenied; a HEAD's bare 403). Without ``s3:ListBucket`` on the bucket
        S3 answers a missing key this way too, so it means "missing or not permitted". A 403 with another code
        (``InvalidObjectState``, a credential error on a GET) is not this."""
        return self.code in _FORBIDDEN_CODES

    @property
    def precondition_failed(self) -> bool:
        """``If-Match`` failed: the object is not the version pinned."""
        return self.code in _PRECONDITION_CODES or self.status == 412

    def describe(self) -> str:
        return str(self.code or self.status)


def error_code(response: Mapping[str, Any]) -> S3ErrorCode | str:
    """The ``Error.Code`` of a ClientError's ``.response`` (a member of S3ErrorCode when the pipeline knows it)."""
    return S3ErrorResponse.of(response).code
