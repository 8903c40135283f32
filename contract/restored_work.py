"""``RestoredWork``: the message the notify_restore Lambda puts on a regional queue for the finisher.

One definition for both sides. The JSON Schema beside this file (``restored_work.v1.schema.json``) is generated
from this model (``python -m contract.export_schema``) and a test keeps the two equal.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from contract.errors import InvalidMessage, UnsupportedSchemaVersion
from contract.keys import RID_PATTERN, work_rid_from_key

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1,)

NonEmpty = Annotated[str, Field(min_length=1)]


def idempotency_key_for(bucket: str, key: str, version_id: str | None, etag: str) -> str:
    """The business key of one object version: stable across redeliveries (never uses the event id)."""
    pinned = f"v:{version_id}" if version_id else f"e:{normalize_etag(etag)}"
    return hashlib.sha256(f"s3://{bucket}/{key}#{pinned}".encode()).hexdigest()


def normalize_etag(etag: str) -> str:
    """ETags arrive with or without the HTTP quotes; the contract carries them bare."""
    return etag.strip().strip('"')


class Continuation(BaseModel):
    """Set by the finisher when it hands a work on as a new message: a long-running work near SQS's 12 h
    visibility cap (``hop``), or a work waiting for its restore (``waits``: a new message does not spend the
    receive count of the old one, so waiting never ends in the DLQ)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hop: int = Field(ge=0, description="how many times this work was handed on near the 12 h visibility cap")
    phase: NonEmpty = Field(description="the ledger phase reached when the work was handed on")
    previous_message_id: str | None = None
    handed_on_at: AwareDatetime
    waits: int = Field(default=0, ge=0, description="how many times this work was handed on to wait for its restore")
    waiting_since: AwareDatetime | None = Field(
        default=None, description="when the finisher first found this work's restore not ready (in progress or "
                                  "re-requested); the maximum wait counts from here")
    wait_until: AwareDatetime | None = Field(
        default=None, description="the restore is not checked again before this (SQS delays a message 15 min at most)")


class RestoredWork(BaseModel):
    """One restored object version, ready for the finisher."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"$id": "https://bdrc.io/schemas/restored-work/v1.json"},
    )

    schema_version: Literal[1] = SCHEMA_VERSION
    work_rid: Annotated[str, Field(pattern=f"^{RID_PATTERN}$")]
    collection: NonEmpty = Field(description="the collection the staging bucket holds (NLM, FPL, …)")
    bucket: NonEmpty
    key: NonEmpty
    region: NonEmpty
    size: int = Field(ge=0, description="object size in bytes")
    etag: NonEmpty = Field(description="the object's ETag without quotes")
    version_id: str | None = None
    storage_class: str | None = Field(default=None, description="storage class the object was restored from")
    restore_expiry: AwareDatetime | None = Field(default=None, description="when the restored copy disappears")
    event_time: AwareDatetime
    source_event_id: NonEmpty = Field(description="id of the event that produced this message (changes on redelivery)")
    idempotency_key: Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
    checksum_sha256: str | None = Field(default=None, description="S3 full-object ChecksumSHA256, when stored")
    checksum_crc64nvme: str | None = Field(default=None, description="S3 ChecksumCRC64NVME, when stored")
    continuation: Continuation | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RestoredWork:
        if work_rid_from_key(self.key) != self.work_rid:
            raise ValueError(f"work_rid {self.work_rid!r} does not match key {self.key!r}")
        expected = idempotency_key_for(self.bucket, self.key, self.version_id, self.etag)
        if self.idempotency_key != expected:
            raise ValueError("idempotency_key is not derived from bucket, key and version-id-or-etag")
        return self

    @classmethod
    def build(
        cls,
        *,
        collection: str,
        bucket: str,
        key: str,
        region: str,
        size: int,
        etag: str,
        event_time: datetime,
        source_event_id: str,
        version_id: str | None = None,
        storage_class: str | None = None,
        restore_expiry: datetime | None = None,
        checksum_sha256: str | None = None,
        checksum_crc64nvme: str | None = None,
    ) -> RestoredWork:
        """Build a message deriving work_rid and idempotency_key, so producers cannot get them wrong."""
        etag = normalize_etag(etag)
        return cls(
            work_rid=work_rid_from_key(key),
            collection=collection,
            bucket=bucket,
            key=key,
            region=region,
            size=size,
            etag=etag,
            version_id=version_id or None,
            storage_class=storage_class,
            restore_expiry=restore_expiry,
            event_time=event_time,
            source_event_id=source_event_id,
            idempotency_key=idempotency_key_for(bucket, key, version_id or None, etag),
            checksum_sha256=checksum_sha256,
            checksum_crc64nvme=checksum_crc64nvme,
        )

    def to_body(self) -> str:
        """The SQS message body (compact JSON, null fields kept so the shape is self-describing)."""
        return self.model_dump_json()


def parse_message(body: str | bytes | dict[str, Any]) -> RestoredWork:
    """Parse an SQS body into a RestoredWork.

    Raises UnsupportedSchemaVersion for a version this code does not know (checked before any other field),
    InvalidMessage for anything else that does not satisfy the contract.
    """
    if isinstance(body, dict):
        document: Any = body
    else:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidMessage(f"message body is not JSON: {err}") from err
    if not isinstance(document, dict):
        raise InvalidMessage(f"message body is a JSON {type(document).__name__}, expected an object")
    version = document.get("schema_version")
    if version is None:
        raise InvalidMessage("message has no schema_version")
    if isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedSchemaVersion(version, SUPPORTED_SCHEMA_VERSIONS)
    try:
        return RestoredWork.model_validate(document)
    except ValidationError as err:
        rid = document.get("work_rid", "?")
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise InvalidMessage(f"{rid}: message violates RestoredWork v{version}: {problems}") from err


def message_attributes(work: RestoredWork) -> dict[str, dict[str, str]]:
    """SQS message attributes for filtering and for humans reading the console."""
    return {
        "work_rid": {"DataType": "String", "StringValue": work.work_rid},
        "collection": {"DataType": "String", "StringValue": work.collection},
        "schema_version": {"DataType": "Number", "StringValue": str(work.schema_version)},
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the current version."""
    return RestoredWork.model_json_schema(mode="serialization")
