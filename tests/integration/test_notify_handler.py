"""notify_restore's real handler against moto (in-process ``mock_aws``): queues, idempotency table, S3 HEAD."""

from __future__ import annotations

import copy
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

from config.routing import Route, RoutingTable
from contract import parse_message, staging_key_for_rid
from lambdas.notify_restore import handler
from lambdas.notify_restore.errors import (
    InvalidKeyRid,
    InvalidObjectSize,
    InvalidRestoreEvent,
    KeyOutsideStagingLayout,
    RestoreBatchFailed,
    UnroutableBucket,
    UnsupportedEventVersion,
)

NLM_BUCKET = "glacier.staging.nlm.bdrc.org"
FPL_BUCKET = "glacier.staging.fpl.bdrc.org"
NLM_REGION, FPL_REGION = "ap-northeast-2", "us-east-1"
TABLE = "test-notify-idempotency"


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes Powertools reads from the Lambda context."""

    function_name: str = "test-notify-restore"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:ap-northeast-2:123456789012:function:test-notify-restore"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class NotifyAws:
    """The moto resources the function talks to: a work queue per region and a queue nothing should reach."""

    queues: dict[str, str]
    stray_queue: str

    def messages(self, region: str) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=region)
        url = self.queues[region]
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        return received.get("Messages", [])

    def total_messages(self) -> int:
        """Every message on any queue, received or not."""
        urls = [(region, url) for region, url in self.queues.items()] + [(NLM_REGION, self.stray_queue)]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        total = 0
        for region, url in urls:
            attributes = boto3.client("sqs", region_name=region).get_queue_attributes(
                QueueUrl=url, AttributeNames=names)["Attributes"]
            total += sum(int(attributes[name]) for name in names)
        return total


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyAws]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "IDEMPOTENCY_TABLE", "ACCEPTED_SUFFIXES", "HEAD_OBJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", NLM_REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", NLM_REGION)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "notify_restore")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "BDRC/Restore")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("IDEMPOTENCY_DAYS", "30")
    with mock_aws():
        queues = {region: boto3.client("sqs", region_name=region).create_queue(QueueName="restored-works")["QueueUrl"]
                  for region in (NLM_REGION, FPL_REGION)}
        stray = boto3.client("sqs", region_name=NLM_REGION).create_queue(QueueName="stray")["QueueUrl"]
        table = RoutingTable({
            NLM_BUCKET: Route(collection="NLM", region=NLM_REGION, queue_url=queues[NLM_REGION]),
            FPL_BUCKET: Route(collection="FPL", region=FPL_REGION, queue_url=queues[FPL_REGION]),
        })
        monkeypatch.setenv("ROUTING_TABLE", table.to_env())
        yield NotifyAws(queues, stray)


@pytest.fixture
def idempotency(aws: NotifyAws, monkeypatch: pytest.MonkeyPatch) -> str:
    boto3.client("dynamodb", region_name=NLM_REGION).create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    monkeypatch.setenv("IDEMPOTENCY_TABLE", TABLE)
    return TABLE


class _CurrentStdout:
    """Writes to whatever ``sys.stdout`` is now (capsys swaps it per test; Powertools' Logger binds it once)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    """stdout of the test: the Logger's JSON lines and the EMF documents."""
    handler.logger.registered_handler.setStream(_CurrentStdout())  # type: ignore[arg-type]
    return capsys


def invoke(event: Any) -> dict[str, Any]:
    return handler.lambda_handler(event, FakeLambdaContext())


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def emf_metrics(lines: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(metric name, document) for every EMF document printed."""
    return [(m["Name"], line) for line in lines if "_aws" in line
            for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]]


def restore_record(s3_notification_restore_event: dict[str, Any], bucket: str, key: str) -> dict[str, Any]:
    record = copy.deepcopy(s3_notification_restore_event["Records"][0])
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["object"]["key"] = key
    return record


def test_eventbridge_event_sends_one_valid_message_to_its_bucket_queue(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any],
) -> None:
    summary = invoke(eventbridge_restore_event)
    (message,) = aws.messages(NLM_REGION)
    work = parse_message(message["Body"])
    assert (work.work_rid, work.collection, work.region, work.schema_version) == (
        "W1NLM4700", "NLM", NLM_REGION, 1)
    assert work.source_event_id == eventbridge_restore_event["id"]
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes == {"work_rid": "W1NLM4700", "collection": "NLM", "schema_version": "1"}
    assert summary["counts"] == {"routed": 1}
    assert summary["records"][0]["message_id"] == message["MessageId"]
    assert aws.total_messages() == 1


def test_s3_notification_sends_one_valid_message_to_its_bucket_queue(
    aws: NotifyAws, s3_notification_restore_event: dict[str, Any],
) -> None:
    summary = invoke(s3_notification_restore_event)
    (message,) = aws.messages(FPL_REGION)
    work = parse_message(message["Body"])
    assert (work.work_rid, work.collection, work.region) == ("W1FPL2251", "FPL", FPL_REGION)
    assert message["MessageAttributes"]["work_rid"]["StringValue"] == "W1FPL2251"
    assert summary["shape"] == "s3-notification"
    assert aws.total_messages() == 1


def test_batch_of_two_bags_and_a_non_bag_sends_two_and_ignores_one(
    aws: NotifyAws, s3_notification_restore_event: dict[str, Any], output: pytest.CaptureFixture[str],
) -> None:
    batch = {"Records": [
        restore_record(s3_notification_restore_event, NLM_BUCKET, staging_key_for_rid("W22084")),
        restore_record(s3_notification_restore_event, FPL_BUCKET, staging_key_for_rid("W1FPL2251")),
        restore_record(s3_notification_restore_event, NLM_BUCKET, "Archive0/84/W22084/W22084.bag.zip.sha256"),
    ]}
    summary = invoke(batch)
    assert summary["counts"] == {"routed": 2, "ignored": 1}
    assert [r["outcome"] for r in summary["records"]] == ["routed", "routed", "ignored"]
    assert [parse_message(m["Body"]).work_rid for m in aws.messages(NLM_REGION)] == ["W22084"]
    assert [parse_message(m["Body"]).work_rid for m in aws.messages(FPL_REGION)] == ["W1FPL2251"]
    metrics = [name for name, _ in emf_metrics(json_lines(output.readouterr().out))]
    assert sorted(metrics) == ["RestoresIgnored", "RestoresRouted", "RestoresRouted"]


def test_plain_zip_is_a_work_when_the_environment_accepts_it(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    eventbridge_restore_event["detail"]["object"]["key"] = "Archive0/00/W1NLM4700/W1NLM4700.zip"
    assert invoke(eventbridge_restore_event)["counts"] == {"ignored": 1}
    monkeypatch.setenv("ACCEPTED_SUFFIXES", ".bag.zip,.zip")
    assert invoke(eventbridge_restore_event)["counts"] == {"routed": 1}
    assert aws.total_messages() == 1


def test_unroutable_bucket_raises_is_counted_and_sends_nothing(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any], output: pytest.CaptureFixture[str],
) -> None:
    eventbridge_restore_event["detail"]["bucket"]["name"] = "glacier.staging.unknown.bdrc.org"
    with pytest.raises(UnroutableBucket, match=r"W1NLM4700: bucket 'glacier\.staging\.unknown\.bdrc\.org'"):
        invoke(eventbridge_restore_event)
    assert aws.total_messages() == 0
    ((name, document),) = emf_metrics(json_lines(output.readouterr().out))
    assert name == "RestoresUnroutable"
    assert document["work_rid"] == "W1NLM4700"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def _without_detail(event: dict[str, Any]) -> Any:
    del event["detail"]
    return event


def _wrong_detail_type(event: dict[str, Any]) -> Any:
    return event | {"detail-type": "Object Created"}


def _future_detail_version(event: dict[str, Any]) -> Any:
    event["detail"]["version"] = "1"
    return event


def _without_key(event: dict[str, Any]) -> Any:
    del event["detail"]["object"]["key"]
    return event


@pytest.mark.parametrize(("spoil", "error"), [
    (lambda event: [event], InvalidRestoreEvent),
    (lambda event: json.dumps(event), InvalidRestoreEvent),
    (_without_detail, InvalidRestoreEvent),
    (_wrong_detail_type, InvalidRestoreEvent),
    (_future_detail_version, UnsupportedEventVersion),
    (_without_key, InvalidRestoreEvent),
], ids=["list", "json-string", "no-detail", "wrong-detail-type", "future-detail-version", "no-key"])
def test_malformed_event_is_refused_with_a_named_error_and_sends_nothing(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any], spoil: Any, error: type[Exception],
    output: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(error):
        invoke(spoil(eventbridge_restore_event))
    assert aws.total_messages() == 0
    assert [name for name, _ in emf_metrics(json_lines(output.readouterr().out))] == ["RestoresInvalid"]


def test_batch_sends_its_good_records_then_fails_and_a_retry_does_not_duplicate(
    aws: NotifyAws, idempotency: str, s3_notification_restore_event: dict[str, Any],
) -> None:
    good = restore_record(s3_notification_restore_event, FPL_BUCKET, staging_key_for_rid("W1FPL2251"))
    unroutable = restore_record(s3_notification_restore_event, "other-bucket", staging_key_for_rid("W22084"))
    wrong_name = copy.deepcopy(good) | {"eventName": "ObjectCreated:Put"}
    batch = {"Records": [unroutable, good, wrong_name]}
    for _attempt in range(2):
        with pytest.raises(RestoreBatchFailed) as failed:
            invoke(batch)
    outcomes = [r["outcome"] for r in failed.value.summary["records"]]
    assert outcomes == ["unroutable", "duplicate", "invalid"]
    assert "W22084: bucket 'other-bucket'" in str(failed.value)
    assert [parse_message(m["Body"]).work_rid for m in aws.messages(FPL_REGION)] == ["W1FPL2251"]
    assert aws.total_messages() == 1


def test_same_restore_delivered_twice_sends_one_message(
    aws: NotifyAws, idempotency: str, eventbridge_restore_event: dict[str, Any], output: pytest.CaptureFixture[str],
) -> None:
    first = invoke(eventbridge_restore_event)
    again = invoke(eventbridge_restore_event | {"id": str(uuid.uuid4())})
    assert first["counts"] == {"routed": 1}
    assert again["counts"] == {"duplicate": 1}
    assert again["records"][0]["message_id"] == first["records"][0]["message_id"]
    (message,) = aws.messages(NLM_REGION)
    assert parse_message(message["Body"]).source_event_id == eventbridge_restore_event["id"]
    lines = json_lines(output.readouterr().out)
    duplicates = [doc for name, doc in emf_metrics(lines) if name == "DuplicatesSuppressed"]
    assert [doc["work_rid"] for doc in duplicates] == ["W1NLM4700"]
    assert any("duplicate suppressed" in str(line.get("message")) for line in lines)


def test_a_later_restore_of_the_same_version_is_sent_and_its_redelivery_suppressed(
    aws: NotifyAws, idempotency: str, eventbridge_restore_event: dict[str, Any],
) -> None:
    # the copy expired and was re-requested: S3 announces the new restore with a new expiry, same version
    rerestored = copy.deepcopy(eventbridge_restore_event) | {"id": str(uuid.uuid4()), "time": "2026-12-02T08:00:00Z"}
    rerestored["detail"]["restore-expiry-time"] = "2026-12-12T00:00:00Z"
    outcomes = [invoke(event)["counts"] for event in (eventbridge_restore_event, rerestored,
                                                       rerestored | {"id": str(uuid.uuid4())})]
    assert outcomes == [{"routed": 1}, {"routed": 1}, {"duplicate": 1}]
    first, second = (parse_message(m["Body"]) for m in aws.messages(NLM_REGION))
    assert first.idempotency_key == second.idempotency_key  # the finisher still knows them as one version
    assert {first.restore_expiry.isoformat(), second.restore_expiry.isoformat()} == {  # type: ignore[union-attr]
        "2026-11-30T00:00:00+00:00", "2026-12-12T00:00:00+00:00"}


def test_without_idempotency_table_every_delivery_is_sent(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any],
) -> None:
    invoke(eventbridge_restore_event)
    invoke(eventbridge_restore_event | {"id": str(uuid.uuid4())})
    assert aws.total_messages() == 2


def test_log_lines_and_metrics_about_a_work_carry_its_rid(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any], output: pytest.CaptureFixture[str],
) -> None:
    invoke(eventbridge_restore_event)
    lines = json_lines(output.readouterr().out)
    logs = [line for line in lines if "_aws" not in line]
    about_work = [line for line in logs if "W1NLM4700" in str(line.get("message"))]
    assert about_work
    assert all(line["work_rid"] == "W1NLM4700" for line in about_work)
    assert all(line["correlation_id"] == eventbridge_restore_event["id"] for line in about_work)
    assert all(line["collection"] == "NLM" for line in about_work)
    ((name, document),) = emf_metrics(lines)
    assert name == "RestoresRouted"
    assert (document["work_rid"], document["collection"], document["region"]) == ("W1NLM4700", "NLM", NLM_REGION)
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "BDRC/Restore"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"],
                                                                       ["service", "collection", "region"]]


def test_head_object_adds_the_stored_checksum_using_the_bucket_region(
    aws: NotifyAws, s3_notification_restore_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3 = boto3.client("s3", region_name=FPL_REGION)
    s3.create_bucket(Bucket=FPL_BUCKET)
    key = staging_key_for_rid("W1FPL2251")
    put = s3.put_object(Bucket=FPL_BUCKET, Key=key, Body=b"bag bytes", ChecksumAlgorithm="SHA256")
    record = restore_record(s3_notification_restore_event, FPL_BUCKET, key)
    record["s3"]["object"] |= {"size": len(b"bag bytes"), "eTag": put["ETag"].strip('"')}
    monkeypatch.setenv("HEAD_OBJECT", "true")
    invoke({"Records": [record]})
    (message,) = aws.messages(FPL_REGION)
    assert parse_message(message["Body"]).checksum_sha256 == put["ChecksumSHA256"]


def test_head_object_of_a_missing_object_fails_and_sends_nothing(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    boto3.client("s3", region_name=NLM_REGION).create_bucket(
        Bucket=NLM_BUCKET, CreateBucketConfiguration={"LocationConstraint": NLM_REGION})
    monkeypatch.setenv("HEAD_OBJECT", "true")
    with pytest.raises(Exception, match="HeadObject"):
        invoke(eventbridge_restore_event)
    assert aws.total_messages() == 0


def test_tracing_on_without_an_xray_daemon_is_harmless(tmp_path: Any) -> None:
    """As in Lambda (LAMBDA_TASK_ROOT set, tracing not disabled) but with no X-Ray daemon: errors stay ours."""
    import subprocess

    code = (
        "import lambdas.notify_restore.handler as h\n"
        "from aws_xray_sdk.core import patcher\n"
        "assert sorted(patcher._PATCHED_MODULES) == ['botocore'], patcher._PATCHED_MODULES\n"
        "class C:\n"
        "    function_name, memory_limit_in_mb, aws_request_id = 'f', 128, 'r'\n"
        "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:f'\n"
        "    def get_remaining_time_in_millis(self): return 1000\n"
        "try:\n"
        "    h.lambda_handler({'detail-type': 'Object Created'}, C())\n"
        "except Exception as err:\n"
        "    print('RAISED', type(err).__name__)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "LAMBDA_TASK_ROOT": str(tmp_path), "ROUTING_TABLE": "{}",
           "POWERTOOLS_METRICS_NAMESPACE": "BDRC/Restore", "AWS_REGION": NLM_REGION}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert "RAISED InvalidRestoreEvent" in result.stdout


# --- hostile and real-world events: refused with a cause, nothing on any work queue ---------------------------------
@pytest.mark.parametrize("key", [
    "W1NLM4700.bag.zip", "Archive1/00/W1NLM4700/W1NLM4700.bag.zip", "Archive0/00/W22084/W1NLM4700.bag.zip",
    "Archive0/00/W1NLM4700/old/W1NLM4700.bag.zip",
], ids=["bucket-root", "wrong-archive", "other-works-folder", "subfolder"])
def test_key_outside_the_staging_layout_fails_with_its_cause_and_sends_nothing(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any], output: pytest.CaptureFixture[str], key: str,
) -> None:
    eventbridge_restore_event["detail"]["object"]["key"] = key
    with pytest.raises(KeyOutsideStagingLayout) as refused:
        invoke(eventbridge_restore_event)
    assert str(refused.value).startswith(f"W1NLM4700: s3://{NLM_BUCKET}/{key}")
    assert "'Archive0/00/W1NLM4700/W1NLM4700.bag.zip'" in str(refused.value)
    assert str(refused.value).endswith("(cause: key_outside_layout)")
    assert aws.total_messages() == 0
    ((name, document),) = emf_metrics(json_lines(output.readouterr().out))
    assert (name, document["cause"], document["key"]) == ("RestoresInvalid", "key_outside_layout", key)


@pytest.mark.parametrize("size", [1234.9, 1e30, True, -1], ids=["fractional", "absurd", "boolean", "negative"])
def test_size_that_is_not_a_byte_count_fails_with_its_cause_and_sends_nothing(
    aws: NotifyAws, eventbridge_restore_event: dict[str, Any], output: pytest.CaptureFixture[str], size: object,
) -> None:
    eventbridge_restore_event["detail"]["object"]["size"] = size
    with pytest.raises(InvalidObjectSize, match=r"\(cause: invalid_size\)$"):
        invoke(eventbridge_restore_event)
    assert aws.total_messages() == 0
    ((name, document),) = emf_metrics(json_lines(output.readouterr().out))
    assert (name, document["cause"]) == ("RestoresInvalid", "invalid_size")


def test_batch_sends_only_its_good_record_and_names_each_refusal_with_its_cause(
    aws: NotifyAws, s3_notification_restore_event: dict[str, Any],
) -> None:
    good = restore_record(s3_notification_restore_event, FPL_BUCKET, staging_key_for_rid("W1FPL2251"))
    outside = restore_record(s3_notification_restore_event, FPL_BUCKET, "incoming/W22084.bag.zip")
    fractional = restore_record(s3_notification_restore_event, FPL_BUCKET, staging_key_for_rid("W22084"))
    fractional["s3"]["object"]["size"] = 1234.9
    undecodable = restore_record(s3_notification_restore_event, FPL_BUCKET, "Archive0/00/W1%FF/W1%FF.bag.zip")
    spaced = restore_record(s3_notification_restore_event, FPL_BUCKET, "Archive0/00/W1+A/W1+A.bag.zip")
    with pytest.raises(RestoreBatchFailed) as failed:
        invoke({"Records": [good, outside, fractional, undecodable, spaced]})
    records = failed.value.summary["records"]
    assert [(r["outcome"], r["cause"]) for r in records] == [
        ("routed", None), ("invalid", "key_outside_layout"), ("invalid", "invalid_size"),
        ("invalid", "undecodable_key"), ("invalid", "invalid_rid")]
    assert "'Archive1/84/W22084/W22084.bag.zip'" in records[1]["error"]
    assert "'W1 A' before '.bag.zip' is not a work RID" in records[4]["error"]  # the decoded name
    for cause in ("key_outside_layout", "invalid_size", "undecodable_key", "invalid_rid"):
        assert f"(cause: {cause})" in str(failed.value)
    assert [parse_message(m["Body"]).work_rid for m in aws.messages(FPL_REGION)] == ["W1FPL2251"]
    assert aws.total_messages() == 1


def test_eventbridge_key_is_not_url_decoded(aws: NotifyAws, eventbridge_restore_event: dict[str, Any]) -> None:
    eventbridge_restore_event["detail"]["object"]["key"] = "Archive0/00/W1+A/W1+A.bag.zip"
    with pytest.raises(InvalidKeyRid, match=r"'W1\+A' before '\.bag\.zip'"):
        invoke(eventbridge_restore_event)
    assert aws.total_messages() == 0


def test_url_encoded_notification_key_is_headed_and_sent_decoded(
    aws: NotifyAws, s3_notification_restore_event: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3 = boto3.client("s3", region_name=FPL_REGION)
    s3.create_bucket(Bucket=FPL_BUCKET)
    key = staging_key_for_rid("W1FPL2251")
    put = s3.put_object(Bucket=FPL_BUCKET, Key=key, Body=b"bag bytes", ChecksumAlgorithm="SHA256")
    record = restore_record(s3_notification_restore_event, FPL_BUCKET, quote(key, safe=""))
    record["s3"]["object"] |= {"size": len(b"bag bytes"), "eTag": put["ETag"].strip('"')}
    monkeypatch.setenv("HEAD_OBJECT", "true")
    invoke({"Records": [record]})
    (message,) = aws.messages(FPL_REGION)
    work = parse_message(message["Body"])
    assert (work.key, work.checksum_sha256) == (key, put["ChecksumSHA256"])
