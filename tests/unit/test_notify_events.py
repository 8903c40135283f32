"""notify_restore: both event shapes → RestoreCompletion, and clear refusals of everything else."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from lambdas.notify_restore.errors import (
    InvalidObjectSize,
    InvalidRestoreEvent,
    UndecodableKey,
    UnsupportedEventVersion,
)
from lambdas.notify_restore.events import RestoreCompletion, parse_event
from lambdas.notify_restore.models import MAX_OBJECT_SIZE


def test_eventbridge_event_becomes_one_completion(eventbridge_restore_event: dict[str, Any]) -> None:
    parsed = parse_event(eventbridge_restore_event)
    assert parsed.shape == "eventbridge"
    assert parsed.event_id == "3f1c6a0e-8d2b-4e55-9a7e-5b0c2d4e9f11"
    (completion,) = parsed.records
    assert completion == RestoreCompletion(
        bucket="glacier.staging.nlm.bdrc.org", key="Archive0/00/W1NLM4700/W1NLM4700.bag.zip", size=17017201852,
        etag="41654cbd2a8f2d3c0abc83444fde825b-2029", event_time=datetime(2026, 11, 20, 8, 47, 18, tzinfo=UTC),
        source_event_id="3f1c6a0e-8d2b-4e55-9a7e-5b0c2d4e9f11", event_region="ap-northeast-2",
        version_id="rHKK9t5p3kcbTA8vLv.bZCnNitDHjIgz", storage_class="DEEP_ARCHIVE",
        restore_expiry=datetime(2026, 11, 30, tzinfo=UTC),
    )


def test_s3_notification_record_becomes_a_completion(s3_notification_restore_event: dict[str, Any]) -> None:
    parsed = parse_event(s3_notification_restore_event)
    assert parsed.shape == "s3-notification"
    (completion,) = parsed.records
    assert isinstance(completion, RestoreCompletion)
    assert (completion.bucket, completion.key, completion.size) == (
        "glacier.staging.fpl.bdrc.org", "Archive1/51/W1FPL2251/W1FPL2251.bag.zip", 78668981)
    assert completion.version_id is None
    assert completion.storage_class == "DEEP_ARCHIVE"
    assert completion.restore_expiry == datetime(2026, 11, 30, tzinfo=UTC)
    assert completion.source_event_id == "s3:6E5A5E04B1CFFAC5:0065C3D18445E403D5"
    assert parsed.event_id == completion.source_event_id


@pytest.mark.parametrize("event", [[1, 2], "text", None, 42])
def test_event_that_is_not_an_object_is_refused(event: object) -> None:
    with pytest.raises(InvalidRestoreEvent, match="expected an object"):
        parse_event(event)


def test_event_of_neither_shape_is_refused() -> None:
    with pytest.raises(InvalidRestoreEvent, match="neither an EventBridge event"):
        parse_event({"id": "x", "hello": "world"})


def test_eventbridge_event_without_detail_is_refused(eventbridge_restore_event: dict[str, Any]) -> None:
    del eventbridge_restore_event["detail"]
    with pytest.raises(InvalidRestoreEvent, match="detail is NoneType"):
        parse_event(eventbridge_restore_event)


def test_wrong_detail_type_is_refused(eventbridge_restore_event: dict[str, Any]) -> None:
    eventbridge_restore_event["detail-type"] = "Object Created"
    with pytest.raises(InvalidRestoreEvent, match=r"'Object Created'.* is not 'Object Restore Completed'"):
        parse_event(eventbridge_restore_event)


def test_unknown_detail_version_is_refused_as_unsupported(eventbridge_restore_event: dict[str, Any]) -> None:
    eventbridge_restore_event["detail"]["version"] = "1"
    with pytest.raises(UnsupportedEventVersion, match="S3 detail version '1'"):
        parse_event(eventbridge_restore_event)


def test_unknown_envelope_version_is_refused_as_unsupported(eventbridge_restore_event: dict[str, Any]) -> None:
    eventbridge_restore_event["version"] = "2"
    with pytest.raises(UnsupportedEventVersion, match="envelope version '2'"):
        parse_event(eventbridge_restore_event)


@pytest.mark.parametrize("missing", ["key", "etag", "size"])
def test_eventbridge_event_missing_an_object_field_names_it(
    eventbridge_restore_event: dict[str, Any], missing: str,
) -> None:
    del eventbridge_restore_event["detail"]["object"][missing]
    with pytest.raises(InvalidRestoreEvent, match=missing):
        parse_event(eventbridge_restore_event)


def test_eventbridge_event_with_bad_expiry_time_is_refused(eventbridge_restore_event: dict[str, Any]) -> None:
    eventbridge_restore_event["detail"]["restore-expiry-time"] = "next tuesday"
    with pytest.raises(InvalidRestoreEvent, match="restore-expiry-time 'next tuesday'"):
        parse_event(eventbridge_restore_event)


def test_batch_keeps_good_records_beside_a_bad_one(s3_notification_restore_event: dict[str, Any]) -> None:
    good = s3_notification_restore_event["Records"][0]
    created = copy.deepcopy(good) | {"eventName": "ObjectCreated:Put"}
    parsed = parse_event({"Records": [good, created, "junk"]})
    assert isinstance(parsed.records[0], RestoreCompletion)
    assert isinstance(parsed.records[1], InvalidRestoreEvent)
    assert "record 1 (Archive1/51/W1FPL2251/W1FPL2251.bag.zip): eventName 'ObjectCreated:Put'" in str(parsed.records[1])
    assert isinstance(parsed.records[2], InvalidRestoreEvent)


def test_batch_record_of_unknown_event_version_is_unsupported(s3_notification_restore_event: dict[str, Any]) -> None:
    s3_notification_restore_event["Records"][0]["eventVersion"] = "3.0"
    (record,) = parse_event(s3_notification_restore_event).records
    assert isinstance(record, UnsupportedEventVersion)


def test_batch_record_without_size_is_refused(s3_notification_restore_event: dict[str, Any]) -> None:
    del s3_notification_restore_event["Records"][0]["s3"]["object"]["size"]
    (record,) = parse_event(s3_notification_restore_event).records
    assert isinstance(record, InvalidRestoreEvent)
    assert "Size" in str(record)


@pytest.mark.parametrize("records", [[], None, {"a": 1}])
def test_batch_without_records_is_refused(records: object) -> None:
    with pytest.raises(InvalidRestoreEvent, match="expected a non-empty list"):
        parse_event({"Records": records})


# --- strict sizes ---------------------------------------------------------------------------------------------------
BAD_SIZES = [1234.9, 1234.0, 1e30, 10**30, MAX_OBJECT_SIZE + 1, -1, True, False, "1234", None]
BAD_SIZE_IDS = ["fractional", "whole-float", "float-1e30", "int-1e30", "over-50TB", "negative", "true", "false",
                "string", "null"]


@pytest.mark.parametrize("size", BAD_SIZES, ids=BAD_SIZE_IDS)
def test_eventbridge_size_that_is_not_a_byte_count_is_refused(
    eventbridge_restore_event: dict[str, Any], size: object,
) -> None:
    eventbridge_restore_event["detail"]["object"]["size"] = size
    with pytest.raises(InvalidRestoreEvent) as refused:
        parse_event(eventbridge_restore_event)
    message = str(refused.value)
    assert "3f1c6a0e-8d2b-4e55-9a7e-5b0c2d4e9f11" in message
    assert "glacier.staging.nlm.bdrc.org/Archive0/00/W1NLM4700/W1NLM4700.bag.zip" in message
    if size is not None:  # a null size is a missing one, refused as before
        assert type(refused.value) is InvalidObjectSize
        assert f"size {size!r}" in message and message.endswith("(cause: invalid_size)")


@pytest.mark.parametrize("size", BAD_SIZES[:-1], ids=BAD_SIZE_IDS[:-1])
def test_s3_notification_size_that_is_not_a_byte_count_is_refused(
    s3_notification_restore_event: dict[str, Any], size: object,
) -> None:
    s3_notification_restore_event["Records"][0]["s3"]["object"]["size"] = size
    (record,) = parse_event(s3_notification_restore_event).records
    assert type(record) is InvalidObjectSize
    assert str(record).startswith("record 0 (Archive1/51/W1FPL2251/W1FPL2251.bag.zip): s3://glacier.staging.fpl")
    assert f"size {size!r}" in str(record)


@pytest.mark.parametrize("size", [0, 1, MAX_OBJECT_SIZE])
def test_whole_byte_counts_up_to_the_largest_s3_object_are_taken(
    eventbridge_restore_event: dict[str, Any], s3_notification_restore_event: dict[str, Any], size: int,
) -> None:
    eventbridge_restore_event["detail"]["object"]["size"] = size
    s3_notification_restore_event["Records"][0]["s3"]["object"]["size"] = size
    for event in (eventbridge_restore_event, s3_notification_restore_event):
        (completion,) = parse_event(event).records
        assert isinstance(completion, RestoreCompletion)
        assert completion.size == size and type(completion.size) is int


# --- keys: URL-decoded for S3 notifications only --------------------------------------------------------------------
@pytest.mark.parametrize(("sent", "key"), [
    ("Archive1/51/W1FPL2251/W1FPL2251.bag.zip", "Archive1/51/W1FPL2251/W1FPL2251.bag.zip"),
    ("Archive0/00/W1+A/W1+A.bag.zip", "Archive0/00/W1 A/W1 A.bag.zip"),
    ("Archive0/00/W1%2BA/W1%2BA.bag.zip", "Archive0/00/W1+A/W1+A.bag.zip"),
    ("Archive0/00/W1%20A/W1%2520A.bag.zip", "Archive0/00/W1 A/W1%20A.bag.zip"),
    ("Archive1%2F51%2FW1FPL2251%2FW1FPL2251.bag.zip", "Archive1/51/W1FPL2251/W1FPL2251.bag.zip"),
    ("Archive0/00/%E0%BD%96%E0%BD%BC%E0%BD%91/%E0%BD%96%E0%BD%BC%E0%BD%91.bag.zip",
     "Archive0/00/\u0f56\u0f7c\u0f51/\u0f56\u0f7c\u0f51.bag.zip"),
], ids=["plain", "plus-is-space", "encoded-plus", "encoded-percent", "encoded-slash", "tibetan"])
def test_s3_notification_keys_are_url_decoded(
    s3_notification_restore_event: dict[str, Any], sent: str, key: str,
) -> None:
    s3_notification_restore_event["Records"][0]["s3"]["object"]["key"] = sent
    (completion,) = parse_event(s3_notification_restore_event).records
    assert isinstance(completion, RestoreCompletion)
    assert completion.key == key


@pytest.mark.parametrize("key", [
    "Archive0/00/W1+A/W1+A.bag.zip", "Archive0/00/W1%2BA/W1%2BA.bag.zip", "Archive0/00/W1 A/W1 A.bag.zip",
    "Archive0/00/\u0f56\u0f7c\u0f51/\u0f56\u0f7c\u0f51.bag.zip",
], ids=["plus", "percent-2B", "space", "tibetan"])
def test_eventbridge_keys_are_kept_as_they_are(eventbridge_restore_event: dict[str, Any], key: str) -> None:
    eventbridge_restore_event["detail"]["object"]["key"] = key
    (completion,) = parse_event(eventbridge_restore_event).records
    assert completion.key == key


@pytest.mark.parametrize("sent", ["Archive0/00/W1%FF/W1%FF.bag.zip", "Archive0/00/W1%E0%BD/W1.bag.zip"],
                         ids=["invalid-byte", "truncated-sequence"])
def test_s3_notification_key_that_does_not_decode_to_utf8_is_refused(
    s3_notification_restore_event: dict[str, Any], sent: str,
) -> None:
    s3_notification_restore_event["Records"][0]["s3"]["object"]["key"] = sent
    (record,) = parse_event(s3_notification_restore_event).records
    assert type(record) is UndecodableKey
    assert f"s3://glacier.staging.fpl.bdrc.org/{sent}" in str(record)
    assert str(record).endswith("(cause: undecodable_key)")
