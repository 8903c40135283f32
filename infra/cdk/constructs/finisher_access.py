"""The on-prem finisher's permissions: one managed policy for every region, attached to one role or user.

IAM is global and the finisher is one process polling every region's queue, so a single policy and principal
live in the access stack (home region); queue ARNs are built from the names in the environment config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rolesanywhere as rolesanywhere
from constructs import Construct

from config.model import FinisherConfig, RolesAnywhereConfig
from infra.cdk.constructs.notify_function import key_arns

WORK_QUEUE_ACTIONS = (
    "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
    # continuation messages (a long work handed on) and redrive from the DLQ back to the work queue
    "sqs:SendMessage",
)
DEAD_LETTER_ACTIONS = (
    # SendMessage: a permanent failure is parked on the DLQ; Receive/Delete: redrive back to the work queue
    "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage",
    # DLQ depth for `finisher status`, URL lookup by name
    "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
)
#: HEAD/GET (GetObjectVersion: the fetch pins ranged GETs to the restored VersionId) and restore requests
STAGED_BAG_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion", "s3:RestoreObject")
ROLES_ANYWHERE = "rolesanywhere.amazonaws.com"
#: a 20 GB bag can take hours; Roles Anywhere sessions can last up to 12 h
MAX_SESSION = Duration.hours(12)
REPO_ROOT = Path(__file__).resolve().parents[3]


class CaCertificateError(ValueError):
    """The Roles Anywhere CA certificate cannot be read or is not a PEM certificate."""


def ca_certificate_pem(config: RolesAnywhereConfig) -> str:
    """The configured CA certificate's PEM text (a file relative to the repository root, or inline)."""
    if config.ca_certificate_pem is not None:
        pem, origin = config.ca_certificate_pem, "finisher.roles_anywhere.ca_certificate_pem"
    else:
        path = cast(Path, config.ca_certificate_file)  # the model requires exactly one of the two
        path = path if path.is_absolute() else REPO_ROOT / path
        try:
            pem, origin = path.read_text(encoding="ascii"), str(path)
        except (OSError, UnicodeDecodeError) as err:
            raise CaCertificateError(f"Roles Anywhere CA certificate {path}: cannot read it: {err}") from err
    if "-----BEGIN CERTIFICATE-----" not in pem or "-----END CERTIFICATE-----" not in pem:
        raise CaCertificateError(f"Roles Anywhere CA certificate {origin}: not a PEM certificate")
    return pem.strip() + "\n"


@dataclass(frozen=True)
class RegionQueues:
    region: str
    queue_name: str
    dlq_name: str


@dataclass(frozen=True)
class BucketKey:
    """The SSE-KMS key of a staging bucket in ``region``."""

    region: str
    kms_key_arn: str


def finisher_statements(stack: Stack, *, queues: Sequence[RegionQueues], bucket_names: Sequence[str],
                        key_suffixes: Sequence[str], namespace: str,
                        bucket_keys: Sequence[BucketKey] = ()) -> list[iam.PolicyStatement]:
    """Exactly what the finisher may do: its queues, the staged bag keys (and the keys they are encrypted with,
    through S3 only), its own metrics namespace."""
    def queue_arn(region: str, name: str) -> str:
        return stack.format_arn(service="sqs", region=region, resource=name)

    decrypt = [iam.PolicyStatement(
        sid="DecryptStagedBags", actions=["kms:Decrypt"],
        resources=sorted({k.kms_key_arn for k in bucket_keys}),
        conditions={"StringEquals": {"kms:ViaService": sorted({f"s3.{k.region}.amazonaws.com" for k in bucket_keys})}},
    )] if bucket_keys else []
    return [
        iam.PolicyStatement(sid="ConsumeWorkQueues", actions=list(WORK_QUEUE_ACTIONS),
                            resources=[queue_arn(q.region, q.queue_name) for q in queues]),
        iam.PolicyStatement(sid="ParkAndRedriveDeadLetters", actions=list(DEAD_LETTER_ACTIONS),
                            resources=[queue_arn(q.region, q.dlq_name) for q in queues]),
        iam.PolicyStatement(sid="RestoreAndFetchStagedBags", actions=list(STAGED_BAG_ACTIONS),
                            resources=key_arns(bucket_names, key_suffixes)),
        *decrypt,
        # PutMetricData has no resource-level permissions; the namespace condition is what limits it
        iam.PolicyStatement(sid="PutFinisherMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
                            conditions={"StringEquals": {"cloudwatch:namespace": namespace}}),
    ]


def role_principal(finisher: FinisherConfig) -> iam.IPrincipal:
    """Roles Anywhere trust anchor if configured, else the trusted role, else the account root."""
    if finisher.roles_anywhere_trust_anchor_arn:
        return iam.ServicePrincipal(ROLES_ANYWHERE).with_conditions(
            {"ArnEquals": {"aws:SourceArn": finisher.roles_anywhere_trust_anchor_arn}}
        )
    if finisher.trusted_role_arn:
        return iam.ArnPrincipal(finisher.trusted_role_arn)
    return iam.AccountRootPrincipal()


def roles_anywhere_conditions(trust_anchor_arn: str, certificate_cn: str) -> dict[str, dict[str, str]]:
    """Only through ``trust_anchor_arn`` and only for a certificate whose subject CN is ``certificate_cn``."""
    return {"ArnEquals": {"aws:SourceArn": trust_anchor_arn},
            "StringEquals": {"aws:PrincipalTag/x509Subject/CN": certificate_cn}}


class FinisherAccess(Construct):
    """``policy`` (managed, named ``policy_name``) and ``principal`` (a role or a user, per config); with
    ``finisher.roles_anywhere``, the ``trust_anchor`` and ``profile`` the on-prem host signs in through."""

    def __init__(self, scope: Construct, construct_id: str, *, policy_name: str, principal_name: str,
                 finisher: FinisherConfig, statements: Sequence[iam.PolicyStatement]) -> None:
        super().__init__(scope, construct_id)
        self.policy = iam.ManagedPolicy(
            self, "Policy", managed_policy_name=policy_name,
            description="bdrc-restore finisher: work queues, DLQs, staged bags, its metrics namespace",
            statements=list(statements),
        )
        self.principal: iam.Role | iam.User
        self.trust_anchor: rolesanywhere.CfnTrustAnchor | None = None
        self.profile: rolesanywhere.CfnProfile | None = None
        if finisher.iam_principal == "user":
            # access keys are created out of band (docs/deploy.md); CloudFormation would expose the secret
            self.principal = iam.User(self, "User", user_name=principal_name, managed_policies=[self.policy])
            return
        if finisher.roles_anywhere:
            self.principal = self._roles_anywhere_role(principal_name, finisher.roles_anywhere)
            return
        role = iam.Role(
            self, "Role", role_name=principal_name, assumed_by=role_principal(finisher),
            managed_policies=[self.policy], max_session_duration=MAX_SESSION,
            description="Assumed by the on-prem bdrc-restore finisher",
        )
        if finisher.roles_anywhere_trust_anchor_arn:
            role.assume_role_policy.add_statements(iam.PolicyStatement(
                actions=["sts:TagSession", "sts:SetSourceIdentity"],
                principals=[iam.ServicePrincipal(ROLES_ANYWHERE)],
                conditions={"ArnEquals": {"aws:SourceArn": finisher.roles_anywhere_trust_anchor_arn}},
            ))
        self.principal = role

    def _roles_anywhere_role(self, principal_name: str, config: RolesAnywhereConfig) -> iam.Role:
        self.trust_anchor = rolesanywhere.CfnTrustAnchor(
            self, "TrustAnchor", name=principal_name, enabled=True,
            source=rolesanywhere.CfnTrustAnchor.SourceProperty(
                source_type="CERTIFICATE_BUNDLE",
                source_data=rolesanywhere.CfnTrustAnchor.SourceDataProperty(
                    x509_certificate_data=ca_certificate_pem(config)),
            ),
        )
        conditions = roles_anywhere_conditions(self.trust_anchor.attr_trust_anchor_arn, config.certificate_cn)
        role = iam.Role(
            self, "Role", role_name=principal_name,
            assumed_by=iam.ServicePrincipal(ROLES_ANYWHERE).with_conditions(conditions),
            managed_policies=[self.policy], max_session_duration=MAX_SESSION,
            description="Assumed by the on-prem bdrc-restore finisher through IAM Roles Anywhere",
        )
        role.assume_role_policy.add_statements(iam.PolicyStatement(
            actions=["sts:TagSession", "sts:SetSourceIdentity"], principals=[iam.ServicePrincipal(ROLES_ANYWHERE)],
            conditions=conditions,
        ))
        self.profile = rolesanywhere.CfnProfile(
            self, "Profile", name=principal_name, enabled=True, role_arns=[role.role_arn],
            duration_seconds=int(MAX_SESSION.to_seconds()),
        )
        return role
