"""IAM exercised, not only read: the finisher's and the Lambda's policies, taken from the synthesized prod templates,
held by IAM users on a moto server with IAM enforcement on, and the real jobs run with those users' keys.

The run (once per module): bags staged as DEEP_ARCHIVE (an admin user) → ``finisher request-restore`` (finisher's
key) → the real notify_restore handler per region (that region's function policy: HEAD, SendMessage, DynamoDB) →
``finisher run --drain`` with metrics on (HEAD, ranged GETs, SQS receive/extend/delete, PutMetricData) → every
work synced. A permission the jobs need and the policy lacks fails it: the finisher logs AccessDenied and the work
never syncs, or the handler's invocation fails.

What moto evaluates (moto 5, ``moto/iam/access_control.py``, "the current implementation is very basic"): the
request's signature and access key, and the caller's identity policies — the user's inline and attached policies
(and an assumed role's) — ``Action``/``NotAction`` and ``Resource`` matched with wildcards, an explicit Deny
winning; the action as moto names it (HEAD of a key is ``s3:GetObject``, a GET with ``versionId``
``s3:GetObjectVersion``, the SQS actions on the queue's ARN, CloudWatch and DynamoDB on ``*`` or the table).
Where moto authorises against ``*`` instead of the resource (DynamoDB, CloudWatch Logs, X-Ray: any service but
S3, SQS, IAM and STS; and SQS GetQueueUrl, whose queue it does not read), those actions are held with
``Resource: "*"`` on the server and their real resources are asserted from the template instead
(``iam_principals.as_moto_evaluates``); moto names CloudWatch's actions ``monitoring:*``, so they are held under
that name too. What it does not evaluate: ``Condition`` blocks of identity policies (no request context is passed: the
``cloudwatch:namespace`` and ``kms:ViaService`` conditions are not checked), resource-based policies (queue and
bucket policies, the TLS Deny), trust policies of the Lambda service and of IAM Roles Anywhere (so the principals
here are users holding the roles' permission policies), KMS, permission boundaries and SCPs, and S3's rule that a
caller without ``s3:ListBucket`` gets 403 instead of 404 for a missing key (moto answers 404 there; it answers 403
for a key outside the policy, which is what the 403 test uses). The Lambda's log and X-Ray permissions are the
Lambda runtime's, not the handler's, and are not exercised.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from botocore.exceptions import ClientError

from config.model import EnvironmentConfig
from contract import S3ErrorResponse
from harness.bags import SampleSpec, build_sample_zip
from harness.events import restore_completed_event
from harness.lambda_runtime import Invocation, invoke_notify_restore
from harness.moto_env import FAKE_CREDENTIALS, MOTO_ACCOUNT, LocalAws, local_aws
from harness.pipeline import FinisherPaths, StagedObject, finisher_stdout, run_finisher, stage_sample, wait_restored
from onprem.finisher.errors import ObjectMissing, PermanentError
from onprem.finisher.fetch.request import FetchRequest
from onprem.finisher.fetch.s3 import MISSING_OR_FORBIDDEN, head_object
from tests.infra.conftest import Synthesis
from tests.infra.iam_principals import (
    ADMIN_POLICY,
    IamUser,
    as_moto_evaluates,
    create_user,
    enforce_iam,
    logical_id_of,
    principal_policies,
)

#: one work per region: the NLM bucket in ap-northeast-2, the BDRC bucket (probed last by request-restore) in us-east-1
SPECS = (SampleSpec("NLM", ("W1NLM4700",), image_groups=1, image_bytes=8 * 1024),
         SampleSpec("BDRC", ("W22084",), image_groups=1, image_bytes=8 * 1024))
DRAIN_ENV = {"FINISHER_METRICS": "true", "FINISHER_WAIT_TIME_SECONDS": "1", "FINISHER_DRAIN_IDLE_LIMIT": "5",
             "FINISHER_LOG_FORMAT": "json"}


@dataclass
class ExercisedRun:
    environment: EnvironmentConfig
    admin: LocalAws
    finisher: LocalAws
    finisher_user: IamUser
    staged: list[StagedObject]
    request_restore: str
    invocations: list[Invocation]
    drain: str
    drain_returncode: int
    status: dict[str, object]
    #: statements given ``Resource: "*"`` on the server (moto authorises their service against ``*``)
    widened: dict[str, list[str]]


def _held(documents: dict[str, dict[str, object]], widened: list[str]) -> dict[str, dict[str, object]]:
    held = {}
    for name, document in documents.items():
        held[name], changed = as_moto_evaluates(document)
        widened += changed
    return held


def _as(aws: LocalAws, user: IamUser) -> LocalAws:
    """``aws`` whose subprocesses run with ``user``'s key (its own clients stay the admin's)."""
    return dataclasses.replace(aws, aws_environ=user.environ(aws.aws_environ))


@pytest.fixture(scope="module")
def run(synthesized: dict[str, Synthesis], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExercisedRun]:
    synthesis = synthesized["prod"]
    environment = synthesis.environment
    root = tmp_path_factory.mktemp("iam")
    access = synthesis.template("access")
    # a child-process server: enforcement is global to a moto process and must not reach the other tests' servers
    with local_aws(environment, in_process=False, config_dir=root / "aws") as aws:
        iam = aws.client("iam")
        admin = create_user(iam, "harness-admin", {"AdministratorAccess": ADMIN_POLICY})
        finisher_id = next(k for k, v in access["Resources"].items()
                           if v["Type"] in ("AWS::IAM::Role", "AWS::IAM::User") and k.startswith("Finisher"))
        widened: dict[str, list[str]] = {"finisher": []}
        finisher_user = create_user(iam, "finisher", _held(principal_policies(access, finisher_id, "us-east-1"),
                                                           widened["finisher"]))
        notify_users = {}
        for key, region in synthesis.regions():
            regional = synthesis.template(key)
            role_id = logical_id_of(regional, "AWS::IAM::Role", "NotifyRole")
            widened[region.region] = []
            notify_users[region.region] = create_user(
                iam, f"notify-{region.region}",
                _held(principal_policies(regional, role_id, region.region), widened[region.region]))
        enforce_iam(aws.endpoint_url)
        for name in FAKE_CREDENTIALS:
            os.environ.pop(name, None)  # local_aws puts them back when the block ends
        admin_aws = LocalAws(environment=environment, endpoint_url=aws.endpoint_url,
                             aws_environ=admin.environ(aws.aws_environ), _session=admin.session())
        finisher_aws = _as(admin_aws, finisher_user)
        paths = FinisherPaths(root / "finisher")
        staged = [stage_sample(admin_aws, build_sample_zip(root / "bags" / spec.work_rids[0], spec))
                  for spec in SPECS]
        requested = run_finisher(finisher_aws, paths,
                                 ["request-restore", "--yes", *(s.work_rid for s in staged), "--json"], timeout_s=60)
        invocations: list[Invocation] = []
        for item in staged:
            head = wait_restored(admin_aws, item)
            event = restore_completed_event(bucket=item.bucket, key=item.key, region=item.region, head=head,
                                            account=MOTO_ACCOUNT)
            invocations += invoke_notify_restore(_as(admin_aws, notify_users[item.region]), item.region, [event],
                                                 root / "lambda")
        drained = run_finisher(finisher_aws, paths, ["run", "--drain"], extra_env=DRAIN_ENV, timeout_s=120)
        status = json.loads(finisher_stdout(finisher_aws, paths, ["status", "--json"]))
        yield ExercisedRun(environment, admin_aws, finisher_aws, finisher_user, staged, requested.stdout,
                           invocations, drained.stdout, drained.returncode, status, widened)


def test_enforcement_is_on_for_the_finisher_key(run: ExercisedRun) -> None:
    s3 = run.finisher_user.session().client("s3", region_name="us-east-1")
    with pytest.raises(ClientError) as refused:
        s3.list_objects_v2(Bucket=run.staged[0].bucket)  # the finisher holds no s3:ListBucket
    assert S3ErrorResponse.of(refused.value.response).forbidden


def test_request_restore_runs_with_the_finisher_policy(run: ExercisedRun) -> None:
    assert "AccessDenied" not in run.request_restore, run.request_restore
    report = json.loads(run.request_restore.strip().splitlines()[-1])
    assert [row["outcome"] for row in report["objects"]] == ["requested", "requested"], report


def test_the_handler_heads_sends_and_dedupes_with_its_function_policy(run: ExercisedRun) -> None:
    assert [i.error for i in run.invocations] == [None, None]
    assert [i.response["counts"] for i in run.invocations] == [{"routed": 1}, {"routed": 1}]


def test_the_finisher_whole_path_runs_with_its_policy(run: ExercisedRun) -> None:
    assert run.drain_returncode == 0, run.drain
    assert "AccessDenied" not in run.drain and "not sent" not in run.drain, run.drain
    phases = {row["work_rid"]: row["phase"] for row in run.status["works"]}  # type: ignore[union-attr]
    assert phases == {"W1NLM4700": "synced", "W22084": "synced"}


def test_the_finisher_metrics_reach_cloudwatch(run: ExercisedRun) -> None:
    metrics = run.admin.client("cloudwatch", "us-east-1").list_metrics(Namespace=run.environment.monitoring.namespace)
    assert metrics["Metrics"], "no PutMetricData reached the server"


def test_a_head_refused_with_403_is_missing_or_not_permitted_and_permanent(run: ExercisedRun) -> None:
    item = run.staged[0]
    key = item.key.removesuffix(".bag.zip") + ".zip"  # not there, and outside the policy: S3 answers 403
    s3 = run.finisher_user.session().client("s3", region_name=item.region)
    with pytest.raises(ObjectMissing) as raised:
        head_object(s3, FetchRequest(item.work_rid, item.bucket, key, None, None, None))
    assert isinstance(raised.value, PermanentError) and raised.value.cause == MISSING_OR_FORBIDDEN
    assert f"s3://{item.bucket}/{key} is missing or not permitted" in str(raised.value)


def test_only_actions_moto_cannot_scope_were_widened_and_their_resources_are_exact(
        run: ExercisedRun, synthesized: dict[str, Synthesis]) -> None:
    """What the server evaluates against ``*`` is read here instead: GetQueueUrl is granted on the queues only,
    the function's table actions on its own table (log actions are the Lambda runtime's)."""
    synthesis = synthesized["prod"]
    assert run.widened["finisher"] == ["ConsumeWorkQueues:sqs:GetQueueUrl", "ParkAndRedriveDeadLetters:sqs:GetQueueUrl"]
    access = synthesis.template("access")
    finisher_id = next(k for k in access["Resources"] if k.startswith("FinisherRole"))
    finisher = {s["Sid"]: s for d in principal_policies(access, finisher_id, "us-east-1").values()
                for s in d["Statement"]}
    assert finisher["ConsumeWorkQueues"]["Resource"] == [
        f"arn:aws:sqs:{r.region}:{MOTO_ACCOUNT}:{r.queue_name}" for r in run.environment.regions]
    assert finisher["ParkAndRedriveDeadLetters"]["Resource"] == [
        f"arn:aws:sqs:{r.region}:{MOTO_ACCOUNT}:{r.dlq_name}" for r in run.environment.regions]
    for key, region in synthesis.regions():
        regional = synthesis.template(key)
        documents = principal_policies(regional, logical_id_of(regional, "AWS::IAM::Role", "NotifyRole"),
                                       region.region)
        statements = [s for d in documents.values() for s in d["Statement"]]
        moved = {w.split(":", 1)[0] for w in run.widened[region.region]}
        assert moved == {"WriteOwnLogs", "UseIdempotencyTable", ""}, run.widened[region.region]
        table = run.environment.idempotency_table_name(region.region)
        by_sid = {s.get("Sid"): s for s in statements}
        assert by_sid["UseIdempotencyTable"]["Resource"] == (
            f"arn:aws:dynamodb:{region.region}:{MOTO_ACCOUNT}:table/{table}")
        failure_queue = run.environment.failure_queue_name(region.region)
        assert [s["Resource"] for s in statements if "sqs:GetQueueUrl" in s["Action"]] == [
            f"arn:aws:sqs:{region.region}:{MOTO_ACCOUNT}:{failure_queue}"]
