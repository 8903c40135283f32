"""``finisher replay-failures`` on a moto server: the failure queue holds both formats AWS writes to it, and each
original event goes through the REAL notify_restore handler (``harness/lambda_invoke.py``, Lambda's Invoke API on
loopback: moto's own Lambda needs Docker images) to a RestoredWork message on the region's work queue.

The finisher reaches moto's SQS and the stand-in's Lambda through the SDKs' per-service endpoint variables
(``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL_LAMBDA``), as an operator's shell would point them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from config.loader import load_environment
from contract import parse_message, staging_key_for_rid
from harness.events import restore_completed_event
from harness.lambda_invoke import LambdaInvokeStandIn
from harness.moto_env import MOTO_ACCOUNT, LocalAws, local_aws, patched_environ
from onprem.finisher.cli.app import app

REGION = "us-east-1"
BUCKET = "glacier.staging.dev.bdrc.org"
LAMBDA_RID, BUS_RID = "W1BDRC4701", "W1BDRC4702"
RESTORED = 'ongoing-request="false", expiry-date="Sat, 12 Dec 2026 00:00:00 GMT"'


@dataclass(frozen=True)
class Replay:
    aws: LocalAws
    lambda_api: LambdaInvokeStandIn
    failure_queue: str

    def depth(self) -> int:
        return self.aws.queue_depth(self.failure_queue, REGION)

    def run(self, *args: str) -> tuple[int, list[dict[str, Any]]]:
        result = CliRunner().invoke(app, ["replay-failures", "--json", *args])
        return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Replay]:
    """The dev environment on moto, the Invoke stand-in, and ``finisher`` configured to reach both."""
    dev = load_environment("dev")
    environment = dev.model_copy(update={"finisher": dev.finisher.model_copy(update={
        "archive_root": tmp_path / "archive", "staging_dir": tmp_path / "staging", "state_dir": tmp_path / "state"})})
    env_file = tmp_path / "env.yaml"
    env_file.write_text(yaml.safe_dump(environment.model_dump(mode="json")), encoding="utf-8")
    for name in ("FINISHER_SETTINGS_FILE", "FINISHER_ENDPOINT_URL", "FAILURE_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    # the variables are set inside local_aws's own patching and undone before it ends (a monkeypatch here would put
    # local_aws's AWS_ENDPOINT_URL back after local_aws restored the environment: leaked into every later test)
    with local_aws(environment, config_dir=tmp_path / "aws") as aws, \
            LambdaInvokeStandIn(aws, tmp_path / "lambda") as lambda_api, \
            patched_environ({"BDRC_ENV_FILE": str(env_file), "AWS_ENDPOINT_URL_SQS": aws.endpoint_url,
                             "AWS_ENDPOINT_URL_LAMBDA": lambda_api.url},
                            remove=("AWS_ENDPOINT_URL",)):  # the finisher would send every service there
        yield Replay(aws, lambda_api, aws.failure_queue_url(REGION))


def completion(rid: str) -> dict[str, Any]:
    head = {"ContentLength": 4096, "ETag": f'"{rid.lower()}0000"', "Restore": RESTORED,
            "StorageClass": "DEEP_ARCHIVE"}
    return restore_completed_event(bucket=BUCKET, key=staging_key_for_rid(rid), region=REGION, head=head,
                                   account=MOTO_ACCOUNT, event_id=f"event-{rid}")


def lambda_destination_record(event: dict[str, Any]) -> str:
    """What Lambda's on-failure destination writes after the async retries of ``event``."""
    return json.dumps({
        "version": "1.0", "timestamp": "2026-12-01T10:00:00.000Z",
        "requestContext": {"requestId": "c0ffee00-0000-4000-8000-000000000001", "condition": "RetriesExhausted",
                           "approximateInvokeCount": 3, "functionArn":
                               f"arn:aws:lambda:{REGION}:{MOTO_ACCOUNT}:function:bdrc-restore-dev-{REGION}"
                               f"-notify-restore:$LATEST"},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "Task timed out after 30.03 seconds", "errorType": "Sandbox.Timedout"},
    })


def test_both_failure_formats_are_replayed_through_the_real_handler(replay: Replay) -> None:
    sqs = replay.aws.client("sqs", REGION)
    sqs.send_message(QueueUrl=replay.failure_queue, MessageBody=lambda_destination_record(completion(LAMBDA_RID)))
    sqs.send_message(QueueUrl=replay.failure_queue, MessageBody=json.dumps(completion(BUS_RID)), MessageAttributes={
        "ERROR_CODE": {"DataType": "String", "StringValue": "SDK_CLIENT_ERROR"},
        "ERROR_MESSAGE": {"DataType": "String", "StringValue": "Rate Exceeded"},
        "RULE_ARN": {"DataType": "String", "StringValue": f"arn:aws:events:{REGION}:{MOTO_ACCOUNT}:rule/restore"}})
    sqs.send_message(QueueUrl=replay.failure_queue, MessageBody="not an event")

    code, listed = replay.run("--dry-run")
    assert code == 1  # the unreadable one is named and left
    by_rid = {tuple(row["work_rids"]): row for row in listed}
    assert by_rid[(LAMBDA_RID,)]["cause"] == "RetriesExhausted: Sandbox.Timedout: Task timed out after 30.03 seconds"
    assert by_rid[(LAMBDA_RID,)]["format"] == "lambda-destination"
    assert by_rid[(BUS_RID,)]["cause"] == "SDK_CLIENT_ERROR: Rate Exceeded"
    assert by_rid[(BUS_RID,)]["format"] == "eventbridge-dlq"
    assert sorted(row["outcome"] for row in listed) == ["unreadable", "would-replay", "would-replay"]
    assert replay.depth() == 3 and replay.lambda_api.handled == []  # a dry run replays and deletes nothing

    code, first = replay.run("--limit", "1")
    assert len(first) == 1 and replay.depth() == 2
    foreign = CliRunner().invoke(app, ["replay-failures", "--queue-url", f"{replay.failure_queue}-other"])
    assert foreign.exit_code == 2 and "is not the failure queue of a region of dev" in foreign.output
    code, rest = replay.run("--queue-url", replay.failure_queue)  # as FAILURE_QUEUE_URL names it
    assert code == 1 and replay.depth() == 1  # only the unreadable message is left
    assert sorted(row["outcome"] for row in first + rest) == ["replayed", "replayed", "unreadable"]

    assert replay.lambda_api.wait_idle(60)
    assert [(h.invocation_type, h.result.ok) for h in replay.lambda_api.handled] == [("Event", True)] * 2
    received = sqs.receive_message(QueueUrl=replay.aws.queue_url(REGION), MaxNumberOfMessages=10)["Messages"]
    works = {parse_message(m["Body"]).work_rid: parse_message(m["Body"]) for m in received}
    assert sorted(works) == sorted([BUS_RID, LAMBDA_RID])
    assert works[LAMBDA_RID].bucket == BUCKET and works[LAMBDA_RID].key == staging_key_for_rid(LAMBDA_RID)
