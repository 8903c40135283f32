"""The policies of a synthesized template, resolved to concrete ARNs, and IAM users holding exactly them on a moto
server whose IAM enforcement is switched on (``/moto-api/reset-auth``, what ``INITIAL_NO_AUTH_ACTION_COUNT`` sets).

A template's policy resources are CloudFormation: ``Fn::Join``, ``Fn::GetAtt`` and pseudo parameters. ``resolve``
turns the few forms the stacks use into the ARNs the resources have on the server (the placeholder account becomes
moto's); any other form raises, so a new intrinsic in a policy fails the test instead of being guessed.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3

from harness.moto_env import FAKE_CREDENTIALS, MOTO_ACCOUNT
from infra.cdk.app import PLACEHOLDER_ACCOUNT

#: what the server's own set-up (provisioning, IAM) needs: everything, so the set-up is never what fails
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


class UnresolvedIntrinsic(ValueError):
    """A policy holds a CloudFormation form ``resolve`` does not know."""


def _attribute_arn(resource: Mapping[str, Any], region: str) -> str:
    kind, props = resource["Type"], resource.get("Properties", {})
    if kind == "AWS::SQS::Queue":
        return f"arn:aws:sqs:{region}:{MOTO_ACCOUNT}:{props['QueueName']}"
    if kind == "AWS::DynamoDB::Table":
        return f"arn:aws:dynamodb:{region}:{MOTO_ACCOUNT}:table/{props['TableName']}"
    if kind == "AWS::Logs::LogGroup":
        return f"arn:aws:logs:{region}:{MOTO_ACCOUNT}:log-group:{props['LogGroupName']}:*"
    raise UnresolvedIntrinsic(f"the Arn of a {kind}")


def resolve(value: Any, template: Mapping[str, Any], region: str) -> Any:
    """``value`` with every intrinsic replaced by what it is on the moto server of ``region``."""
    if isinstance(value, str):
        return value.replace(PLACEHOLDER_ACCOUNT, MOTO_ACCOUNT)
    if isinstance(value, list):
        return [resolve(item, template, region) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        pseudo = {"AWS::Partition": "aws", "AWS::AccountId": MOTO_ACCOUNT, "AWS::Region": region,
                  "AWS::URLSuffix": "amazonaws.com"}
        if value["Ref"] in pseudo:
            return pseudo[value["Ref"]]
        raise UnresolvedIntrinsic(f"Ref {value['Ref']}")
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve(part, template, region)) for part in parts)
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        if attribute != "Arn":
            raise UnresolvedIntrinsic(f"Fn::GetAtt {logical_id}.{attribute}")
        return _attribute_arn(template["Resources"][logical_id], region)
    if any(key.startswith("Fn::") for key in value):
        raise UnresolvedIntrinsic(json.dumps(value))
    return {key: resolve(item, template, region) for key, item in value.items()}


def principal_policies(template: Mapping[str, Any], principal_id: str, region: str) -> dict[str, dict[str, Any]]:
    """Every policy document the template gives the role or user ``principal_id`` (its inline ``AWS::IAM::Policy``
    resources and the managed policies it references), by logical id, resolved for ``region``."""
    resources = template["Resources"]
    principal = resources[principal_id]
    reference = {"Ref": principal_id}
    documents = {}
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy" and reference in props.get("Roles", []) + props.get("Users", []):
            documents[logical_id] = props["PolicyDocument"]
    for managed in principal["Properties"].get("ManagedPolicyArns", []):
        if not (isinstance(managed, dict) and set(managed) == {"Ref"}):
            raise UnresolvedIntrinsic(f"{principal_id}: an AWS managed policy {json.dumps(managed)}")
        documents[managed["Ref"]] = resources[managed["Ref"]]["Properties"]["PolicyDocument"]
    return {name: resolve(document, template, region) for name, document in documents.items()}


#: the services whose requests moto authorises against their resource's ARN; every other service's requests it
#: authorises against ``*`` (``_determine_resource`` is defined for these only), where a statement scoped to an ARN
#: could never match
RESOURCE_AWARE_SERVICES = frozenset({"s3", "sqs", "iam", "sts"})
#: actions of those services moto still authorises against ``*``: GetQueueUrl names its queue by ``QueueName``,
#: which moto's SQS does not read when it determines the resource
UNSCOPED_ACTIONS = frozenset({"sqs:GetQueueUrl"})


#: IAM prefixes moto names by the service's signing name instead (it reads the action from the SigV4 scope)
SIGNING_NAMES = {"cloudwatch": "monitoring"}


def _as_signed(action: str) -> str:
    prefix, _, name = action.partition(":")
    return f"{SIGNING_NAMES.get(prefix, prefix)}:{name}"


def _scoped_by_moto(action: str) -> bool:
    return action.split(":", 1)[0] in RESOURCE_AWARE_SERVICES and action not in UNSCOPED_ACTIONS


def as_moto_evaluates(document: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``document`` as moto can evaluate it, and the ``Sid:action`` of every action moved: the actions moto
    authorises against ``*`` go to a statement of their own with ``Resource: "*"`` (the actions stay exact, the
    rest of the statement keeps its resources; the test reads the real resources of what moved). A CloudWatch
    action is also granted under moto's name for it (``monitoring:PutMetricData``)."""
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    widened, held = [], []
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        actions = [_as_signed(a) for a in actions]
        statement = {**statement, "Action": actions}
        unscoped = [a for a in actions if not _scoped_by_moto(a)]
        if statement.get("Resource") == "*" or not unscoped:
            held.append(statement)
            continue
        sid = statement.get("Sid", "")
        widened += [f"{sid}:{action}" for action in unscoped]
        scoped = [a for a in actions if _scoped_by_moto(a)]
        if scoped:
            held.append({**statement, "Action": scoped})
        held.append({**statement, "Action": unscoped, "Resource": "*", "Sid": f"{sid}Unscoped"})
    return {**document, "Statement": held}, widened


def logical_id_of(template: Mapping[str, Any], resource_type: str, prefix: str) -> str:
    """The one resource of ``resource_type`` whose logical id starts with ``prefix``."""
    found = [k for k, v in template["Resources"].items() if v["Type"] == resource_type and k.startswith(prefix)]
    if len(found) != 1:
        raise LookupError(f"expected one {resource_type} named {prefix}…, found {found}")
    return found[0]


@dataclass(frozen=True)
class IamUser:
    """An IAM user on the server and its access key."""

    name: str
    access_key_id: str
    secret_access_key: str

    def environ(self, aws_environ: Mapping[str, str]) -> dict[str, str]:
        """``aws_environ`` (the server's AWS variables) with this user's key instead of the fake credentials;
        no session token: moto refuses a user's key that comes with one."""
        environ = {k: v for k, v in aws_environ.items() if k not in FAKE_CREDENTIALS}
        return {**environ, "AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(aws_access_key_id=self.access_key_id,
                                     aws_secret_access_key=self.secret_access_key)


def create_user(iam: Any, name: str, documents: Mapping[str, Mapping[str, Any]]) -> IamUser:
    """A user holding exactly ``documents`` (inline policies, one per document) and an access key."""
    iam.create_user(UserName=name)
    for policy_name, document in documents.items():
        iam.put_user_policy(UserName=name, PolicyName=policy_name[:128], PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return IamUser(name, key["AccessKeyId"], key["SecretAccessKey"])


def enforce_iam(endpoint_url: str) -> None:
    """From the next request on, the server authenticates every request and authorises it against the caller's
    policies (``INITIAL_NO_AUTH_ACTION_COUNT`` = 0 in the server's process)."""
    # a plain body: as a form (urllib's default type) the server would see no data
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10):  # the loopback moto server
        return
