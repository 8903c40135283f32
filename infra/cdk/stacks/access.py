"""The finisher's IAM policy and principal: global (IAM), deployed once, from the home region."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from config.model import EnvironmentConfig
from infra.cdk.constructs.finisher_access import BucketKey, FinisherAccess, RegionQueues, finisher_statements
from infra.cdk.constructs.notify_function import key_arns


class FinisherAccessStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, environment: EnvironmentConfig, account: str) -> None:
        super().__init__(
            scope, construct_id, env=Environment(account=account, region=environment.monitoring.dashboard_region),
            description=f"bdrc-restore {environment.name}: the on-prem finisher's permissions",
        )
        bucket_names = [b.name for r in environment.regions for b in r.buckets]
        #: the staged bag keys the finisher may restore and fetch
        self.bag_key_arns = key_arns(bucket_names, environment.notify.accepted_suffixes())
        statements = finisher_statements(
            self,
            queues=[RegionQueues(r.region, r.queue_name, r.dlq_name) for r in environment.regions],
            bucket_names=bucket_names,
            key_suffixes=environment.notify.accepted_suffixes(),
            namespace=environment.monitoring.namespace,
            bucket_keys=[BucketKey(r.region, b.kms_key_arn) for r in environment.regions for b in r.buckets
                         if b.kms_key_arn],
        )
        self.access = FinisherAccess(
            self, "Finisher", policy_name=f"{environment.resource_prefix}-finisher",
            principal_name=f"{environment.resource_prefix}-finisher", finisher=environment.finisher,
            statements=statements,
        )
        CfnOutput(self, "FinisherPolicyArn", value=self.access.policy.managed_policy_arn)
        principal = self.access.principal
        CfnOutput(self, "FinisherPrincipalArn",
                  value=principal.role_arn if isinstance(principal, iam.Role) else principal.user_arn)
        # what aws_signing_helper needs on the finisher host (docs/deploy.md)
        if self.access.trust_anchor is not None and self.access.profile is not None:
            CfnOutput(self, "RolesAnywhereTrustAnchorArn", value=self.access.trust_anchor.attr_trust_anchor_arn)
            CfnOutput(self, "RolesAnywhereProfileArn", value=self.access.profile.attr_profile_arn)
