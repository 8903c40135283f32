from __future__ import annotations

import ast
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

import contract.s3
from contract import (
    InvalidMessage,
    RestoredWork,
    StorageClass,
    UnsupportedSchemaVersion,
    idempotency_key_for,
    message_attributes,
    parse_message,
    staging_key_for_rid,
)
from contract.export_schema import SCHEMA_PATH, render


def _from_eventbridge(event: dict) -> RestoredWork:
    detail = event["detail"]
    return RestoredWork.build(
        collection="NLM",
        bucket=detail["bucket"]["name"],
        key=detail["object"]["key"],
        region=event["region"],
        size=detail["object"]["size"],
        etag=detail["object"]["etag"],
        version_id=detail["object"].get("version-id"),
        storage_class=detail["source-storage-class"],
        restore_expiry=detail["restore-expiry-time"],
        event_time=event["time"],
        source_event_id=event["id"],
    )


def _from_s3_record(record: dict) -> RestoredWork:
    s3 = record["s3"]
    restore = record["glacierEventData"]["restoreEventData"]
    return RestoredWork.build(
        collection="FPL",
        bucket=s3["bucket"]["name"],
        key=s3["object"]["key"],
        region=record["awsRegion"],
        size=s3["object"]["size"],
        etag=s3["object"]["eTag"],
        storage_class=restore["lifecycleRestoreStorageClass"],
        restore_expiry=restore["lifecycleRestorationExpiryTime"],
        event_time=record["eventTime"],
        source_event_id=record["responseElements"]["x-amz-request-id"],
    )


def test_eventbridge_sample_builds_a_valid_message(eventbridge_restore_event) -> None:
    work = _from_eventbridge(eventbridge_restore_event)
    assert work.work_rid == "W1NLM4700"
    assert work.schema_version == 1
    assert work.version_id == "rHKK9t5p3kcbTA8vLv.bZCnNitDHjIgz"
    assert work.restore_expiry == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_message(work.to_body()) == work


def test_s3_notification_sample_builds_a_valid_message(s3_notification_restore_event) -> None:
    work = _from_s3_record(s3_notification_restore_event["Records"][0])
    assert work.work_rid == "W1FPL2251"
    assert work.version_id is None
    assert work.size == 78668981
    assert parse_message(work.to_body().encode()) == work


def test_idempotency_key_ignores_event_id_and_quotes(eventbridge_restore_event) -> None:
    first = _from_eventbridge(eventbridge_restore_event)
    redelivered = dict(eventbridge_restore_event, id="another-event-id", time="2026-11-21T00:00:00Z")
    redelivered["detail"] = dict(redelivered["detail"])
    quoted = '"41654cbd2a8f2d3c0abc83444fde825b-2029"'
    redelivered["detail"]["object"] = dict(redelivered["detail"]["object"], etag=quoted)
    second = _from_eventbridge(redelivered)
    assert first.source_event_id != second.source_event_id
    assert first.idempotency_key == second.idempotency_key


def test_idempotency_key_changes_with_version_or_etag() -> None:
    base = idempotency_key_for("b", "k", None, "etag1")
    assert base != idempotency_key_for("b", "k", None, "etag2")
    assert base != idempotency_key_for("b", "k", "v1", "etag1")
    assert idempotency_key_for("b", "k", "v1", "etag1") == idempotency_key_for("b", "k", "v1", "other")
    assert base != idempotency_key_for("b2", "k", None, "etag1")


def test_future_schema_version_is_rejected_whole(eventbridge_restore_event) -> None:
    body = json.loads(_from_eventbridge(eventbridge_restore_event).to_body())
    body["schema_version"] = 2
    body["new_field"] = "from the future"
    with pytest.raises(UnsupportedSchemaVersion, match="schema_version 2"):
        parse_message(json.dumps(body))


@pytest.mark.parametrize("version", ["1", True, 0, None, 1.5])
def test_bad_schema_version_values(eventbridge_restore_event, version) -> None:
    body = json.loads(_from_eventbridge(eventbridge_restore_event).to_body())
    body["schema_version"] = version
    with pytest.raises((UnsupportedSchemaVersion, InvalidMessage)):
        parse_message(body)


@pytest.mark.parametrize("body", ["not json", "[]", "{}", b"\xff\xfe", '{"schema_version": 1}'])
def test_malformed_bodies_are_invalid_messages(body) -> None:
    with pytest.raises(InvalidMessage):
        parse_message(body)


def test_missing_field_is_named(eventbridge_restore_event) -> None:
    body = json.loads(_from_eventbridge(eventbridge_restore_event).to_body())
    del body["etag"]
    with pytest.raises(InvalidMessage, match=r"W1NLM4700: .*etag"):
        parse_message(body)


def test_inconsistent_rid_or_key_is_rejected(eventbridge_restore_event) -> None:
    body = json.loads(_from_eventbridge(eventbridge_restore_event).to_body())
    with pytest.raises(InvalidMessage, match="does not match key"):
        parse_message(dict(body, work_rid="W999"))
    with pytest.raises(InvalidMessage, match="idempotency_key"):
        parse_message(dict(body, bucket="another.bucket"))


def test_unknown_field_in_v1_is_rejected(eventbridge_restore_event) -> None:
    body = json.loads(_from_eventbridge(eventbridge_restore_event).to_body())
    with pytest.raises(InvalidMessage, match="surprise: Extra inputs"):
        parse_message(dict(body, surprise=1))


def test_naive_timestamps_are_rejected(eventbridge_restore_event) -> None:
    body = json.loads(_from_eventbridge(eventbridge_restore_event).to_body())
    with pytest.raises(InvalidMessage, match="event_time"):
        parse_message(dict(body, event_time="2026-11-20T08:47:18"))


def test_message_attributes(eventbridge_restore_event) -> None:
    attrs = message_attributes(_from_eventbridge(eventbridge_restore_event))
    assert attrs["work_rid"]["StringValue"] == "W1NLM4700"
    assert attrs["collection"]["StringValue"] == "NLM"
    assert attrs["schema_version"] == {"DataType": "Number", "StringValue": "1"}


def test_exported_json_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), "run: python -m contract.export_schema"


def test_json_schema_validates_a_message(eventbridge_restore_event) -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    body = json.loads(_from_eventbridge(eventbridge_restore_event).to_body())
    jsonschema.validate(body, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(body, schema_version=2), schema)


@given(
    rid=st.from_regex(r"\A[A-Z][A-Za-z0-9]{1,12}\Z"),
    size=st.integers(min_value=0, max_value=50 * 2**30),
    etag=st.from_regex(r"\A[0-9a-f]{32}(-[1-9][0-9]{0,3})?\Z"),
    version=st.one_of(st.none(), st.from_regex(r"\A[A-Za-z0-9._]{1,32}\Z")),
    expiry=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
)
def test_message_round_trip(rid, size, etag, version, expiry) -> None:
    work = RestoredWork.build(
        collection="NLM",
        bucket="glacier.staging.nlm.bdrc.org",
        key=staging_key_for_rid(rid),
        region="ap-northeast-2",
        size=size,
        etag=etag,
        version_id=version,
        storage_class="DEEP_ARCHIVE",
        restore_expiry=expiry,
        event_time=datetime(2026, 11, 20, tzinfo=UTC),
        source_event_id="e1",
    )
    assert work.work_rid == rid
    assert parse_message(work.to_body()) == work


def test_the_s3_vocabulary_imports_only_the_standard_library() -> None:
    # the Lambda's asset carries contract/ as it is, beside Powertools: no boto3/botocore import may creep in
    tree = ast.parse(Path(contract.s3.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_a_storage_class_member_travels_as_its_plain_name() -> None:
    work = RestoredWork.build(collection="NLM", bucket="glacier.staging.nlm.bdrc.org",
                              key=staging_key_for_rid("W1NLM4700"), region="us-east-1", size=5, etag="abc",
                              event_time=datetime(2026, 11, 20, tzinfo=UTC), source_event_id="e",
                              storage_class=StorageClass.DEEP_ARCHIVE)
    assert json.loads(work.to_body())["storage_class"] == "DEEP_ARCHIVE"
    assert parse_message(work.to_body()).storage_class == "DEEP_ARCHIVE"
