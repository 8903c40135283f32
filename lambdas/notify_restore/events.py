"""Both event shapes → neutral ``RestoreCompletion`` records (pure: no I/O).

Known shape versions (anything else is refused with UnsupportedEventVersion, never guessed at):
EventBridge envelope ``version`` "0" with S3 ``detail.version`` "0"; S3 notification records with
``eventVersion`` 2.x and ``s3.s3SchemaVersion`` "1.0".

Sizes are strict byte counts (models.py). Keys of S3 notifications arrive URL-encoded (``+`` for a space, ``%XX``)
and are decoded here; EventBridge keys arrive as they are and are kept as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import unquote_plus

from pydantic import BaseModel, ValidationError

from lambdas.notify_restore.errors import (
    InvalidObjectSize,
    InvalidRestoreEvent,
    UndecodableKey,
    UnsupportedEventVersion,
)
from lambdas.notify_restore.models import MAX_OBJECT_SIZE, StrictEventBridgeEvent, StrictS3Record, is_size_error

EVENTBRIDGE_DETAIL_TYPE = "Object Restore Completed"
EVENTBRIDGE_SOURCE = "aws.s3"
EVENTBRIDGE_VERSIONS = ("0",)
EVENTBRIDGE_DETAIL_VERSIONS = ("0",)
S3_EVENT_NAME = "ObjectRestore:Completed"
S3_EVENT_MAJOR_VERSIONS = ("2",)
S3_SCHEMA_VERSIONS = ("1.0",)

Shape = Literal["eventbridge", "s3-notification"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RestoreCompletion:
    """One restored object version, whichever shape announced it."""

    bucket: str
    key: str
    size: int
    etag: str
    event_time: datetime
    source_event_id: str
    event_region: str
    version_id: str | None = None
    storage_class: str | None = None
    restore_expiry: datetime | None = None


@dataclass(frozen=True)
class ParsedEvent:
    """An invocation's event: its records, each a completion or the reason it cannot be read."""

    shape: Shape
    #: the correlation id of the invocation (EventBridge event id; first record's id for a batch)
    event_id: str | None
    records: list[RestoreCompletion | InvalidRestoreEvent] = field(default_factory=list)


def parse_event(event: object) -> ParsedEvent:
    """Recognise the shape and read every record.

    Raises InvalidRestoreEvent when the event as a whole is unreadable (not an object, neither shape, wrong
    detail-type, an EventBridge event with missing fields). A bad record of an S3 notification batch is returned
    in ``records`` as its InvalidRestoreEvent so the good records are still handled.
    """
    if not isinstance(event, Mapping):
        raise InvalidRestoreEvent(f"event is a JSON {type(event).__name__}, expected an object")
    if "Records" in event:
        return _parse_batch(event)
    if "detail-type" in event or "detail" in event:
        completion = _parse_eventbridge(event)
        return ParsedEvent("eventbridge", completion.source_event_id, [completion])
    raise InvalidRestoreEvent(
        f"event is neither an EventBridge event (no detail-type) nor an S3 notification (no Records); "
        f"top-level fields: {sorted(map(str, event))[:10]}"
    )


def _parse_eventbridge(event: Mapping[str, Any]) -> RestoreCompletion:
    event_id = event.get("id", "?")
    where = f"event {event_id}"
    if event.get("detail-type") != EVENTBRIDGE_DETAIL_TYPE or event.get("source") != EVENTBRIDGE_SOURCE:
        raise InvalidRestoreEvent(
            f"{where}: detail-type {event.get('detail-type')!r} from source {event.get('source')!r} is not "
            f"{EVENTBRIDGE_DETAIL_TYPE!r} from {EVENTBRIDGE_SOURCE!r}"
        )
    if event.get("version") not in EVENTBRIDGE_VERSIONS:
        raise UnsupportedEventVersion(
            f"{where}: EventBridge envelope version {event.get('version')!r} is not one this function knows "
            f"({', '.join(EVENTBRIDGE_VERSIONS)})"
        )
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidRestoreEvent(f"{where}: detail is {type(detail).__name__}, expected an object")
    if detail.get("version") not in EVENTBRIDGE_DETAIL_VERSIONS:
        raise UnsupportedEventVersion(
            f"{where}: S3 detail version {detail.get('version')!r} is not one this function knows "
            f"({', '.join(EVENTBRIDGE_DETAIL_VERSIONS)})"
        )
    model = _validate(StrictEventBridgeEvent, event, where, _object_key(detail.get("object")),
                      _bucket_name(detail), detail.get("object"))
    obj, detail_model = model.detail.object, model.detail
    where = f"event {model.id} (s3://{detail_model.bucket.name}/{obj.key})"
    missing = [name for name, value in (("size", obj.size), ("etag", obj.etag)) if value is None or value == ""]
    if missing:
        raise InvalidRestoreEvent(f"{where}: detail.object.{' and '.join(missing)} missing")
    return RestoreCompletion(
        bucket=detail_model.bucket.name,
        key=obj.key,
        size=obj.size,
        etag=obj.etag,
        version_id=obj.version_id or None,
        storage_class=detail_model.source_storage_class,
        restore_expiry=_timestamp(detail_model.restore_expiry_time, where, "detail.restore-expiry-time"),
        event_time=model.time,
        source_event_id=model.id,
        event_region=model.region,
    )


def _parse_batch(event: Mapping[str, Any]) -> ParsedEvent:
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        raise InvalidRestoreEvent(f"S3 notification: Records is {records!r:.80}, expected a non-empty list")
    parsed: list[RestoreCompletion | InvalidRestoreEvent] = []
    for index, record in enumerate(records):
        try:
            parsed.append(_parse_record(record, index))
        except InvalidRestoreEvent as err:
            parsed.append(err)
    first_id = next((r.source_event_id for r in parsed if isinstance(r, RestoreCompletion)), None)
    return ParsedEvent("s3-notification", first_id, parsed)


def _parse_record(record: object, index: int) -> RestoreCompletion:
    where = f"record {index}"
    if not isinstance(record, Mapping):
        raise InvalidRestoreEvent(f"{where}: is a JSON {type(record).__name__}, expected an object")
    s3 = record.get("s3") if isinstance(record.get("s3"), Mapping) else {}
    key = _object_key(s3.get("object"))
    if key:
        where = f"{where} ({key})"
    if record.get("eventName") != S3_EVENT_NAME:
        raise InvalidRestoreEvent(f"{where}: eventName {record.get('eventName')!r} is not {S3_EVENT_NAME!r}")
    major = str(record.get("eventVersion", "")).split(".", 1)[0]
    if major not in S3_EVENT_MAJOR_VERSIONS or s3.get("s3SchemaVersion") not in S3_SCHEMA_VERSIONS:
        raise UnsupportedEventVersion(
            f"{where}: eventVersion {record.get('eventVersion')!r} / s3SchemaVersion {s3.get('s3SchemaVersion')!r}"
            f" is not one this function knows (2.x / {', '.join(S3_SCHEMA_VERSIONS)})"
        )
    model = _validate(StrictS3Record, record, where, key, _bucket_name(s3), s3.get("object"))
    obj = model.s3.object
    if obj is None or obj.size is None or not obj.eTag:
        raise InvalidRestoreEvent(f"{where}: s3.object needs key, size and eTag")
    decoded_key = _decoded_key(obj.key, where, model.s3.bucket.name)
    request_id = model.responseElements.x_amz_request_id
    restore = model.glacierEventData.restoreEventData if model.glacierEventData else None
    return RestoreCompletion(
        bucket=model.s3.bucket.name,
        key=decoded_key,
        size=obj.size,
        etag=obj.eTag,
        version_id=obj.versionId or None,
        storage_class=restore.lifecycleRestoreStorageClass if restore else None,
        restore_expiry=restore.lifecycleRestorationExpiryTime if restore else None,
        event_time=model.eventTime,
        # a notification has no event id: the S3 request id (+ sequencer) names this delivery
        source_event_id=f"s3:{request_id}" + (f":{obj.sequencer}" if obj.sequencer else ""),
        event_region=model.awsRegion,
    )


def _validate(model: type[M], document: Mapping[str, Any], where: str, key: str | None, bucket: str | None,
              obj: object) -> M:
    try:
        return model.model_validate(document)
    except ValidationError as err:
        if any(is_size_error(e["loc"]) for e in err.errors(include_url=False)):
            size = obj.get("size") if isinstance(obj, Mapping) else None
            raise InvalidObjectSize(
                f"{where}: s3://{bucket or '?'}/{key or '?'}: size {size!r} is not a whole number of bytes from 0 "
                f"to {MAX_OBJECT_SIZE} (S3's largest object, 50 TB)"
            ) from err
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise InvalidRestoreEvent(f"{where}: {problems}") from err


def _decoded_key(key: str, where: str, bucket: str) -> str:
    """An S3 notification key URL-decoded (``+`` → space, ``%XX`` → UTF-8 bytes), refused when not UTF-8."""
    try:
        return unquote_plus(key, errors="strict")
    except UnicodeDecodeError as err:
        raise UndecodableKey(f"{where}: s3://{bucket}/{key}: the URL-encoded key does not decode to UTF-8 "
                             f"({err.reason} at byte {err.start})") from err


def _bucket_name(holder: object) -> str | None:
    bucket = holder.get("bucket") if isinstance(holder, Mapping) else None
    name = bucket.get("name") if isinstance(bucket, Mapping) else None
    return name if isinstance(name, str) and name else None


def _object_key(obj: object) -> str | None:
    key = obj.get("key") if isinstance(obj, Mapping) else None
    return key if isinstance(key, str) and key else None


def _timestamp(text: str | None, where: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as err:
        raise InvalidRestoreEvent(f"{where}: {name} {text!r} is not an ISO 8601 time") from err
