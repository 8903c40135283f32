"""``finisher preflight`` against a moto server: the account as a first deploy would meet it.

moto does not return ``EventBridgeConfiguration`` from GetBucketNotificationConfiguration and accepts a put naming
a destination that does not exist (S3 refuses it): the stale destination is made by deleting its queue afterwards,
and EventBridge is always read as off here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from onprem.finisher.cli.app import app
from tests.integration.moto_endpoint import moto_endpoint

MOTO_ACCOUNT = "123456789012"
HOME, OTHER = "us-east-1", "ap-northeast-2"
KEY_ARN = f"arn:aws:kms:{OTHER}:{MOTO_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture
def account(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every client of this process on the moto server, with fake credentials."""
    for name in ("AWS_PROFILE", "FINISHER_SETTINGS_FILE", "FINISHER_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": HOME, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    return endpoint


def client(service: str, region: str) -> Any:
    return boto3.client(service, region_name=region)


def environment_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, regions: dict[str, list[dict[str, Any]]],
                     account_id: str | None = MOTO_ACCOUNT) -> dict[str, Any]:
    """A two-region environment of fresh names, written where ``finisher`` reads it (BDRC_ENV_FILE)."""
    prefix = f"pf-{uuid.uuid4().hex[:8]}"
    document: dict[str, Any] = {
        "name": "preflight", "resource_prefix": prefix,
        "regions": [{"region": region, "queue_name": f"{prefix}-{region}-works",
                     "dlq_name": f"{prefix}-{region}-works-dlq", "buckets": buckets}
                    for region, buckets in regions.items()],
        "finisher": {"archive_root": str(tmp_path / "archive"), "staging_dir": str(tmp_path / "staging"),
                     "state_dir": str(tmp_path / "state")},
    }
    if account_id:
        document["account"] = account_id
    (tmp_path / "archive").mkdir(exist_ok=True)
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    monkeypatch.setenv("BDRC_ENV_FILE", str(path))
    return document


def bucket(region: str, collection: str = "NLM", **extra: Any) -> dict[str, Any]:
    return {"name": f"pf-{uuid.uuid4().hex[:10]}.staging.test", "collection": collection, **extra}


def create_bucket(name: str, region: str) -> None:
    location = {} if region == HOME else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    client("s3", region).create_bucket(Bucket=name, **location)


def preflight(*, table: bool = False) -> tuple[int, dict[str, Any], str]:
    """``finisher preflight --json`` (and, with ``table``, the table an operator reads: same exit code)."""
    runner = CliRunner()
    as_json = runner.invoke(app, ["preflight", "--json"])
    if not table:
        return as_json.exit_code, json.loads(as_json.stdout), ""
    printed = runner.invoke(app, ["preflight"])
    assert as_json.exit_code == printed.exit_code, printed.output
    return as_json.exit_code, json.loads(as_json.stdout), printed.stdout


def problems(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(f["subject"], f["check"]): f["message"] for f in report["findings"] if f["verdict"] == "problem"}


def test_a_fresh_account_holding_the_buckets_is_ready_for_the_first_deploy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, account: str) -> None:
    home, other = bucket(HOME, "BDRC"), bucket(OTHER)
    environment_file(tmp_path, monkeypatch, {OTHER: [other], HOME: [home]})
    create_bucket(home["name"], HOME)
    create_bucket(other["name"], OTHER)
    code, report, table = preflight(table=True)
    assert code == 0, table
    assert report["ok"] and problems(report) == {}
    assert report["caller_account"] == MOTO_ACCOUNT
    assert sorted(report["changes"]) == sorted(f"{b['name']}: EventBridge notifications off → on (no other "
                                               f"configuration)" for b in (home, other))
    created = [f for f in report["findings"] if f["check"] == "reachable"]
    assert len(created) == 10 and {f["message"] for f in created} == {"created by the deploy"}
    assert "nothing would fail" in table and "cdk deploy will change on the buckets:" in table


def deploy_stand_in(document: dict[str, Any], region: str) -> None:
    """The regional stack as CloudFormation holds it after a deploy: its fixed-name queues, table and log group."""
    prefix = document["resource_prefix"]
    names = next(r for r in document["regions"] if r["region"] == region)
    resources: dict[str, Any] = {
        f"Queue{i}": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}
        for i, name in enumerate((names["queue_name"], names["dlq_name"], f"{prefix}-{region}-notify-failures"))}
    resources["Table"] = {"Type": "AWS::DynamoDB::Table", "Properties": {
        "TableName": f"{prefix}-{region}-notify-idempotency", "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}]}}
    resources["Logs"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
        "LogGroupName": f"/aws/lambda/{prefix}-{region}-notify-restore"}}
    client("cloudformation", region).create_stack(StackName=f"{prefix}-{region}", TemplateBody=json.dumps(
        {"Resources": resources}))


def test_after_the_deploy_every_named_resource_must_be_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, account: str) -> None:
    staging = bucket(HOME)
    document = environment_file(tmp_path, monkeypatch, {HOME: [staging]})
    create_bucket(staging["name"], HOME)
    deploy_stand_in(document, HOME)
    failure_queue = f"{document['resource_prefix']}-{HOME}-notify-failures"
    sqs = client("sqs", HOME)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=failure_queue)["QueueUrl"])  # removed by hand
    code, report, _ = preflight()
    assert code == 1
    assert list(problems(report)) == [(f"queue {failure_queue}", "reachable")]
    assert "is deployed but the queue is gone" in problems(report)[(f"queue {failure_queue}", "reachable")]
    stack = [f["message"] for f in report["findings"] if f["subject"].startswith("stack ")]
    assert stack == ["deployed: the deploy updates it"]
    assert [f["message"] for f in report["findings"] if f["check"] == "reachable"].count("reachable") == 4


def queue_arn(name: str) -> tuple[str, str]:
    sqs = client("sqs", HOME)
    url = sqs.create_queue(QueueName=f"pf-{uuid.uuid4().hex[:8]}-{name}")["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_each_thing_a_first_deploy_would_fail_on_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, account: str) -> None:
    # one environment holding every failure (one preflight run: each costs a few seconds of client set-up)
    missing, misplaced, stale = bucket(HOME), bucket(HOME, "FPL"), bucket(HOME, "BDRC")
    kms_unconfigured, kms_configured = bucket(OTHER), bucket(OTHER, "FPL", kms_key_arn=KEY_ARN)
    document = environment_file(tmp_path, monkeypatch, {HOME: [missing, misplaced, stale],
                                                        OTHER: [kms_unconfigured, kms_configured]},
                                account_id="111122223333")
    create_bucket(misplaced["name"], OTHER)
    create_bucket(stale["name"], HOME)
    (_, live), (gone_url, gone) = queue_arn("live"), queue_arn("gone")
    client("s3", HOME).put_bucket_notification_configuration(Bucket=stale["name"], NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]} for arn in (live, gone)]})
    client("sqs", HOME).delete_queue(QueueUrl=gone_url)
    for name in (kms_unconfigured["name"], kms_configured["name"]):
        create_bucket(name, OTHER)
        client("s3", OTHER).put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}}]})
    leftover = document["regions"][0]["dlq_name"]
    client("sqs", HOME).create_queue(QueueName=leftover)

    code, report, table = preflight(table=True)
    assert code == 1
    found = problems(report)
    assert set(found) == {
        (f"bucket {missing['name']}", "exists"), (f"bucket {misplaced['name']}", "region"),
        (f"bucket {stale['name']}", "destination"), (f"bucket {kms_unconfigured['name']}", "encryption"),
        (f"queue {leftover}", "left over"), ("caller", "identity")}
    assert "does not exist in this account" in found[(f"bucket {missing['name']}", "exists")]
    assert f"is in {OTHER}, configured in {HOME}" in found[(f"bucket {misplaced['name']}", "region")]
    assert "no rule listens" in found[(f"bucket {misplaced['name']}", "region")]
    assert gone in found[(f"bucket {stale['name']}", "destination")]
    assert "Unable to validate" in found[(f"bucket {stale['name']}", "destination")]
    assert "no kms_key_arn" in found[(f"bucket {kms_unconfigured['name']}", "encryption")]
    assert "RETAIN" in found[(f"queue {leftover}", "left over")]
    assert "111122223333" in found[("caller", "identity")]
    # a live destination is kept by the rewrite, and said so; the configured key is taken
    [change] = [c for c in report["changes"] if c.startswith(stale["name"])]
    assert f"queue {live}" in change and f"queue {gone}" in change
    seen = {f["message"] for f in report["findings"] if f["subject"] == f"bucket {kms_configured['name']}"}
    assert f"aws:kms with the configured key {KEY_ARN}" in seen
    assert "6 problem(s) would fail the deploy or the pipeline:" in table
