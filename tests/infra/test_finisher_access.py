"""The finisher's managed policy and principal: exactly the least-privilege set, one for all regions."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from config.model import FinisherConfig
from infra.cdk.constructs.finisher_access import FinisherAccess
from tests.infra.conftest import Synthesis, only, resources_of


def _queue_arn(region: str, name: str, account: str = "000000000000") -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":sqs:{region}:{account}:{name}"]]}


def test_finisher_policy_is_exactly_least_privilege(synthesis: Synthesis) -> None:
    environment = synthesis.environment
    template = synthesis.template("access")
    _, policy = only(template, "AWS::IAM::ManagedPolicy")
    assert policy["Properties"]["ManagedPolicyName"] == f"{environment.resource_prefix}-finisher"
    bag_keys = [f"arn:aws:s3:::{b.name}/*{s}" for r in environment.regions for b in r.buckets
                for s in environment.notify.accepted_suffixes()]
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Sid": "ConsumeWorkQueues", "Effect": "Allow",
         "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"],
         "Resource": [_queue_arn(r.region, r.queue_name) for r in environment.regions]},
        {"Sid": "ParkAndRedriveDeadLetters", "Effect": "Allow",
         "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl"],
         "Resource": [_queue_arn(r.region, r.dlq_name) for r in environment.regions]},
        {"Sid": "RestoreAndFetchStagedBags", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:RestoreObject"], "Resource": bag_keys},
        {"Sid": "PutFinisherMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": environment.monitoring.namespace}}},
    ]


def test_principal_kind_follows_the_config(synthesized: dict[str, Synthesis]) -> None:
    dev = synthesized["dev"].template("access")  # iam_principal: user
    assert len(resources_of(dev, "AWS::IAM::User")) == 1
    assert resources_of(dev, "AWS::IAM::Role") == {}
    assert resources_of(dev, "AWS::IAM::AccessKey") == {}
    prod = synthesized["prod"].template("access")  # iam_principal: role, trusted by the account root
    assert resources_of(prod, "AWS::IAM::User") == {}
    _, role = only(prod, "AWS::IAM::Role")
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"]["AWS"]["Fn::Join"][1][-1] == ":iam::000000000000:root"
    assert role["Properties"]["MaxSessionDuration"] == 12 * 3600


def test_policy_and_principal_are_in_the_outputs(synthesis: Synthesis) -> None:
    assert {"FinisherPolicyArn", "FinisherPrincipalArn"} <= set(synthesis.template("access")["Outputs"])


def _role_trust(finisher: FinisherConfig) -> list[dict[str, Any]]:
    stack = Stack(App(), "Trust")
    statement = iam.PolicyStatement(actions=["sqs:ReceiveMessage"], resources=["arn:aws:sqs:us-east-1:1:q"])
    FinisherAccess(stack, "Finisher", policy_name="p", principal_name="finisher", finisher=finisher,
                   statements=[statement])
    _, role = only(Template.from_stack(stack).to_json(), "AWS::IAM::Role")
    return role["Properties"]["AssumeRolePolicyDocument"]["Statement"]


@pytest.fixture
def finisher_paths() -> dict[str, str]:
    return {"archive_root": "/a", "staging_dir": "/s", "state_dir": "/t"}


def test_role_trusts_roles_anywhere_through_the_configured_trust_anchor(finisher_paths: dict[str, str]) -> None:
    anchor = "arn:aws:rolesanywhere:us-east-1:111122223333:trust-anchor/0123"
    statements = _role_trust(FinisherConfig(**finisher_paths, roles_anywhere_trust_anchor_arn=anchor))
    condition = {"ArnEquals": {"aws:SourceArn": anchor}}
    assert statements == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Condition": condition,
         "Principal": {"Service": "rolesanywhere.amazonaws.com"}},
        {"Action": ["sts:TagSession", "sts:SetSourceIdentity"], "Effect": "Allow", "Condition": condition,
         "Principal": {"Service": "rolesanywhere.amazonaws.com"}},
    ]


def test_role_trusts_the_configured_role(finisher_paths: dict[str, str]) -> None:
    trusted = "arn:aws:iam::111122223333:role/onprem-broker"
    statements = _role_trust(FinisherConfig(**finisher_paths, trusted_role_arn=trusted))
    assert statements == [{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": trusted}}]
