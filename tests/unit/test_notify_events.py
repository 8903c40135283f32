"""notify_restore: both event shapes → RestoreCompletion, and clear refusals of everything else."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from lambdas.notify_restore.errors import InvalidRestoreEvent, UnsupportedEventVersion
from lambdas.notify_restore.events import RestoreCompletion, parse_event


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
