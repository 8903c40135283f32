"""notify_restore pure parts: key filter, enrichment into RestoredWork v1, routing, HEAD interpretation, settings."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from config.routing import Route, RoutingTable
from contract import idempotency_key_for, parse_message
from lambdas.notify_restore.enrich import is_accepted_key, restored_work, work_rid_of
from lambdas.notify_restore.errors import (
    InvalidKeyRid,
    InvalidObjectSize,
    InvalidRestoreEvent,
    InvalidSettings,
    KeyOutsideStagingLayout,
    NotifyError,
    RestoreBatchFailed,
    RestoredObjectChanged,
    RestoreStillOngoing,
    UndecodableKey,
    UnroutableBucket,
    UnsupportedEventVersion,
)
from lambdas.notify_restore.events import RestoreCompletion, parse_event
from lambdas.notify_restore.head import HeadFacts, head_facts
from lambdas.notify_restore.route import route_for
from lambdas.notify_restore.settings import NotifySettings

NLM_ROUTE = Route(collection="NLM", region="ap-northeast-2",
                  queue_url="https://sqs.ap-northeast-2.amazonaws.com/111122223333/restored-works")


@pytest.fixture
def completion(eventbridge_restore_event: dict[str, Any]) -> RestoreCompletion:
    record = parse_event(eventbridge_restore_event).records[0]
    assert isinstance(record, RestoreCompletion)
    return record


@pytest.mark.parametrize(("key", "suffixes", "accepted"), [
    ("Archive0/00/W1/W1.bag.zip", (".bag.zip",), True),
    ("Archive0/00/W1/W1.zip", (".bag.zip",), False),
    ("Archive0/00/W1/W1.zip", (".bag.zip", ".zip"), True),
    ("Archive0/00/W1/W1.bag.zip.md5", (".bag.zip", ".zip"), False),
    ("Archive0/00/W1/W1.BAG.ZIP", (".bag.zip",), False),
])
def test_only_configured_suffixes_are_works(key: str, suffixes: tuple[str, ...], accepted: bool) -> None:
    assert is_accepted_key(key, suffixes) is accepted


def test_restored_work_carries_every_field_and_validates_as_v1(completion: RestoreCompletion) -> None:
    work = restored_work(completion, NLM_ROUTE)
    assert parse_message(work.to_body()) == work
    assert work.schema_version == 1
    assert (work.work_rid, work.collection, work.region) == ("W1NLM4700", "NLM", "ap-northeast-2")
    assert (work.size, work.etag, work.version_id) == (
        17017201852, "41654cbd2a8f2d3c0abc83444fde825b-2029", "rHKK9t5p3kcbTA8vLv.bZCnNitDHjIgz")
    assert work.storage_class == "DEEP_ARCHIVE"
    assert work.restore_expiry == datetime(2026, 11, 30, tzinfo=UTC)
    assert work.source_event_id == completion.source_event_id
    assert work.idempotency_key == idempotency_key_for(work.bucket, work.key, work.version_id, work.etag)


def test_idempotency_key_ignores_the_event_id(completion: RestoreCompletion) -> None:
    redelivered = dataclasses.replace(completion, source_event_id="another-event-id")
    assert restored_work(redelivered, NLM_ROUTE).idempotency_key == restored_work(completion, NLM_ROUTE).idempotency_key


def test_head_facts_fill_checksums_and_missing_values(completion: RestoreCompletion) -> None:
    bare = dataclasses.replace(completion, storage_class=None, restore_expiry=None)
    head = HeadFacts(restore_expiry=datetime(2026, 12, 1, tzinfo=UTC), storage_class="DEEP_ARCHIVE",
                     checksum_sha256="c2hh", checksum_crc64nvme="Y3Jj")
    work = restored_work(bare, NLM_ROUTE, head)
    assert (work.checksum_sha256, work.checksum_crc64nvme) == ("c2hh", "Y3Jj")
    assert work.restore_expiry == datetime(2026, 12, 1, tzinfo=UTC)
    assert work.storage_class == "DEEP_ARCHIVE"


def test_key_without_a_valid_rid_is_an_invalid_event(completion: RestoreCompletion) -> None:
    with pytest.raises(InvalidKeyRid, match=r"'' before '\.bag\.zip' is not a work RID") as refused:
        work_rid_of(dataclasses.replace(completion, key="Archive0/00/.bag.zip"))
    assert isinstance(refused.value, InvalidRestoreEvent)
    assert refused.value.cause == "invalid_rid"


def test_staging_key_gives_the_work_rid(completion: RestoreCompletion) -> None:
    assert work_rid_of(completion) == "W1NLM4700"
    plain = dataclasses.replace(completion, key="Archive0/00/W1NLM4700/W1NLM4700.zip")
    assert work_rid_of(plain, (".bag.zip", ".zip")) == "W1NLM4700"


@pytest.mark.parametrize("key", [
    "W1NLM4700.bag.zip", "Archive1/00/W1NLM4700/W1NLM4700.bag.zip", "Archive0/00/W22084/W1NLM4700.bag.zip",
    "Archive0/00/W1NLM4700/restored/W1NLM4700.bag.zip", "incoming/W1NLM4700.bag.zip",
], ids=["bucket-root", "wrong-archive", "other-works-folder", "subfolder", "other-prefix"])
def test_key_outside_the_staging_layout_is_refused_naming_the_expected_key(
    completion: RestoreCompletion, key: str,
) -> None:
    with pytest.raises(KeyOutsideStagingLayout) as refused:
        work_rid_of(dataclasses.replace(completion, key=key))
    message = str(refused.value)
    where = f"s3://glacier.staging.nlm.bdrc.org/{key} (event {completion.source_event_id})"
    assert message.startswith(f"W1NLM4700: {where}")
    assert "'Archive0/00/W1NLM4700/W1NLM4700.bag.zip'" in message
    assert message.endswith("(cause: key_outside_layout)")


def test_name_with_more_than_the_rid_before_the_suffix_is_not_taken_for_the_rid(
    completion: RestoreCompletion,
) -> None:
    """Before, the name up to its first dot was the RID: W1NLM4700.old.zip was routed as W1NLM4700."""
    renamed = dataclasses.replace(completion, key="Archive0/00/W1NLM4700/W1NLM4700.old.zip")
    with pytest.raises(InvalidKeyRid, match=r"'W1NLM4700\.old' before '\.zip'"):
        work_rid_of(renamed, (".bag.zip", ".zip"))


@pytest.mark.parametrize(("error", "cause"), [
    (InvalidRestoreEvent("x"), "invalid_event"), (UnsupportedEventVersion("x"), "unsupported_event_version"),
    (InvalidObjectSize("x"), "invalid_size"), (UndecodableKey("x"), "undecodable_key"),
    (InvalidKeyRid("x"), "invalid_rid"), (KeyOutsideStagingLayout("x"), "key_outside_layout"),
    (UnroutableBucket("W1", "b", "k", ()), "unroutable_bucket"), (RestoreStillOngoing("x"), "restore_ongoing"),
    (RestoredObjectChanged("x"), "object_changed"), (InvalidSettings("x"), "invalid_settings"),
])
def test_every_refusal_ends_its_message_with_its_cause(error: NotifyError, cause: str) -> None:
    """The failure destination's record carries only the error type and message: the cause must be in it."""
    assert error.cause == cause
    assert str(error).endswith(f"(cause: {cause})")


def test_a_failed_batch_lists_each_record_with_its_own_cause() -> None:
    problems = [str(InvalidObjectSize("record 0: size 1.5")), str(KeyOutsideStagingLayout("W1: record 1"))]
    failed = RestoreBatchFailed({}, problems)
    assert str(failed) == ("2 record(s) of the batch failed: record 0: size 1.5 (cause: invalid_size); "
                           "W1: record 1 (cause: key_outside_layout)")


def test_naive_event_time_is_an_invalid_event(completion: RestoreCompletion) -> None:
    naive = dataclasses.replace(completion, event_time=datetime(2026, 11, 20, 8, 47))
    with pytest.raises(InvalidRestoreEvent, match=r"W1NLM4700: .* violates RestoredWork"):
        restored_work(naive, NLM_ROUTE)


def test_unroutable_bucket_names_the_work_the_bucket_and_the_known_ones(completion: RestoreCompletion) -> None:
    table = RoutingTable({"glacier.staging.fpl.bdrc.org": NLM_ROUTE})
    with pytest.raises(UnroutableBucket, match=r"W1NLM4700: bucket 'glacier.staging.nlm.bdrc.org' .* "
                                               r"\(knows glacier.staging.fpl.bdrc.org\)"):
        route_for(table, completion, "W1NLM4700")


def test_routing_table_gives_the_bucket_route(completion: RestoreCompletion) -> None:
    table = RoutingTable({completion.bucket: NLM_ROUTE})
    assert route_for(table, completion, "W1NLM4700") == NLM_ROUTE


def _head(completion: RestoreCompletion, **overrides: Any) -> dict[str, Any]:
    response = {"ETag": f'"{completion.etag}"', "ContentLength": completion.size, "StorageClass": "DEEP_ARCHIVE",
                "Restore": 'ongoing-request="false", expiry-date="Tue, 01 Dec 2026 00:00:00 GMT"'}
    return response | overrides


def test_head_of_a_finished_restore_gives_expiry_and_checksums(completion: RestoreCompletion) -> None:
    facts = head_facts(_head(completion, ChecksumSHA256="c2hh", ChecksumCRC64NVME="Y3Jj",
                             ChecksumType="FULL_OBJECT"), completion, "W1NLM4700")
    assert facts == HeadFacts(restore_expiry=datetime(2026, 12, 1, tzinfo=UTC), storage_class="DEEP_ARCHIVE",
                              checksum_sha256="c2hh", checksum_crc64nvme="Y3Jj")


def test_head_of_an_ongoing_restore_raises_so_the_event_is_retried(completion: RestoreCompletion) -> None:
    with pytest.raises(RestoreStillOngoing, match=r"W1NLM4700: .*still ongoing"):
        head_facts(_head(completion, Restore='ongoing-request="true"'), completion, "W1NLM4700")


def test_an_ongoing_restore_written_with_spaces_is_still_ongoing(completion: RestoreCompletion) -> None:
    with pytest.raises(RestoreStillOngoing):
        head_facts(_head(completion, Restore=' ongoing-request = "true" '), completion, "W1NLM4700")


def test_a_storage_class_s3_adds_later_is_passed_on_as_sent(completion: RestoreCompletion) -> None:
    facts = head_facts(_head(completion, StorageClass="A_CLASS_S3_ADDS_LATER"), completion, "W1NLM4700")
    assert facts.storage_class == "A_CLASS_S3_ADDS_LATER"
    assert restored_work(dataclasses.replace(completion, storage_class=None), NLM_ROUTE, facts).storage_class == \
        "A_CLASS_S3_ADDS_LATER"


def test_composite_sha256_is_not_taken_as_the_object_digest(completion: RestoreCompletion) -> None:
    facts = head_facts(_head(completion, ChecksumSHA256="c2hh-12", ChecksumType="COMPOSITE"), completion, "W1")
    assert facts.checksum_sha256 is None


def test_head_of_another_object_version_refuses(completion: RestoreCompletion) -> None:
    with pytest.raises(RestoredObjectChanged, match="ETag is now abc"):
        head_facts(_head(completion, ETag='"abc"'), completion, "W1NLM4700")


def _env(**overrides: str) -> dict[str, str]:
    table = RoutingTable({"glacier.staging.nlm.bdrc.org": NLM_ROUTE}).to_env()
    return {"ROUTING_TABLE": table, "AWS_REGION": "ap-northeast-2"} | overrides


def test_settings_from_the_construct_environment() -> None:
    settings = NotifySettings.from_env(_env(ACCEPTED_SUFFIXES=".bag.zip,.zip", HEAD_OBJECT="true",
                                            IDEMPOTENCY_TABLE="t", IDEMPOTENCY_DAYS="12",
                                            POWERTOOLS_METRICS_NAMESPACE="BDRC/Test"))
    assert settings.accepted_suffixes == (".bag.zip", ".zip")
    assert settings.head_object is True
    assert (settings.idempotency_table, settings.idempotency_seconds) == ("t", 12 * 86400)
    assert settings.function_region == "ap-northeast-2"
    assert settings.metrics_namespace == "BDRC/Test"
    assert settings.routing_table.route_for("glacier.staging.nlm.bdrc.org") == NLM_ROUTE


def test_settings_defaults_accept_bags_only_without_dedupe() -> None:
    settings = NotifySettings.from_env(_env())
    assert settings.accepted_suffixes == (".bag.zip",)
    assert (settings.head_object, settings.idempotency_table) == (False, None)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"ROUTING_TABLE": ""}, "ROUTING_TABLE is not set"),
    ({"ROUTING_TABLE": '{"b": {"collection": "X"}}'}, "ROUTING_TABLE is not a routing table"),
    ({"HEAD_OBJECT": "maybe"}, "HEAD_OBJECT must be true or false"),
    ({"IDEMPOTENCY_DAYS": "0"}, "IDEMPOTENCY_DAYS must be"),
    ({"ACCEPTED_SUFFIXES": "zip"}, "must start with '.'"),
])
def test_bad_settings_name_the_variable(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSettings, match=message):
        NotifySettings.from_env(_env(**overrides))
