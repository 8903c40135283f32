"""cdk-nag packs and the project's acknowledgements (suppressions).

Every acknowledgement names one rule finding on one construct and says why; ``tests/infra`` asserts the exact
list per stack (from the ``cdk_nag`` metadata written into the templates), so none can spread unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import cdk_nag
from aws_cdk import Acknowledgment, App, Stack, Validations
from constructs import IConstruct

from infra.cdk.constructs.restore_events import NOTIFICATIONS_HANDLER_PREFIX

if TYPE_CHECKING:
    from infra.cdk.stacks import EnvironmentStacks
    from infra.cdk.stacks.access import FinisherAccessStack
    from infra.cdk.stacks.regional import RegionalStack

TERMINAL_QUEUE = ("A terminal queue (dead letters / delivery failures): messages are inspected and redriven by "
                  "a person or `finisher redrive`, so it has no dead-letter queue of its own.")
REASONS = {
    "AwsSolutions::AwsSolutions-SQS3": (
        "The failure queue is the EventBridge target's dead-letter queue and the function's async on-failure "
        "destination; neither is expressed as an SQS redrive policy, which is what the rule looks for."),
    "Serverless::Serverless-SQSRedrivePolicy": TERMINAL_QUEUE,
    "Serverless::Serverless-LambdaDLQ": (
        "Async failures go to the on-failure destination (SQS, the failure queue), which records the whole "
        "invocation; a DeadLetterConfig would deliver the same failure twice."),
    "Serverless::Serverless-LambdaLatestVersion": (
        "Pinned to python3.13 because the managed Powertools layer is published per Python version and the "
        "configured layer version exists for python313; move runtime and layer together."),
    "AwsSolutions::AwsSolutions-L1": (
        "Pinned to python3.13 to match the per-Python-version managed Powertools layer; see notify_function.RUNTIME."),
    "AwsSolutions::AwsSolutions-IAM5[Resource::*]@Notify": (
        "X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords have no resource-level "
        "permissions (added by CDK for Tracing.ACTIVE)."),
    "AwsSolutions::AwsSolutions-IAM5[Resource::*]@Finisher": (
        "cloudwatch:PutMetricData has no resource-level permissions; the statement is limited to the project "
        "namespace with the cloudwatch:namespace condition."),
    "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AWSLambdaBasicExecutionRole]": (
        "CDK's own bucket-notifications handler (Custom::S3BucketNotifications) only writes its logs with the "
        "basic execution role; it is not our code and runs only during deployments."),
    "Serverless::Serverless-SNSRedrivePolicy": (
        "The e-mail subscription of the alarm topic: an undelivered e-mail leaves the alarm in ALARM state in "
        "CloudWatch (and on the dashboard); a DLQ of alarm e-mails would itself need someone watching it."),
}
BAG_KEYS_REASON = ("Object ARNs limited to the staged bag keys (*{suffix}) of one staging bucket; the "
                   "wildcard is the key name, which is what the restore events deliver.")


def bag_key_rule_id(object_arn: str) -> str:
    return f"AwsSolutions::AwsSolutions-IAM5[Resource::{object_arn}]"


def apply_nag_checks(app: App) -> None:
    """Both packs validate every template after synthesis; a finding not acknowledged fails the synth."""
    validations = Validations.of(app)
    validations.add_plugins(cdk_nag.AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))
    validations.add_plugins(cdk_nag.ServerlessChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))


def _acknowledge(construct: IConstruct, rule_ids: Iterable[str], reason_key: str | None = None) -> None:
    for rule_id in rule_ids:
        Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=REASONS[reason_key or rule_id]))


def _acknowledge_bag_keys(construct: IConstruct, object_arns: Iterable[str]) -> None:
    for arn in object_arns:
        suffix = arn.rsplit("*", 1)[1]
        Validations.of(construct).acknowledge(Acknowledgment(
            id=bag_key_rule_id(arn), reason=BAG_KEYS_REASON.format(suffix=suffix)))


def _notifications_handler(stack: Stack) -> IConstruct:
    return next(c for c in stack.node.children if c.node.id.startswith(NOTIFICATIONS_HANDLER_PREFIX))


def acknowledge_regional(stack: RegionalStack, head_object_arns: list[str]) -> None:
    queues, notify = stack.queues, stack.notify
    _acknowledge(queues.dead_letter_queue, ["Serverless::Serverless-SQSRedrivePolicy"])
    _acknowledge(queues.failure_queue,
                 ["Serverless::Serverless-SQSRedrivePolicy", "AwsSolutions::AwsSolutions-SQS3"])
    _acknowledge(notify.function, ["Serverless::Serverless-LambdaDLQ", "Serverless::Serverless-LambdaLatestVersion",
                                   "AwsSolutions::AwsSolutions-L1"])
    _acknowledge(notify.role, ["AwsSolutions::AwsSolutions-IAM5[Resource::*]"],
                 "AwsSolutions::AwsSolutions-IAM5[Resource::*]@Notify")
    _acknowledge_bag_keys(notify.role, head_object_arns)
    if stack.alarms.email_subscription is not None:
        _acknowledge(stack.alarms.topic, ["Serverless::Serverless-SNSRedrivePolicy"])
    _acknowledge(_notifications_handler(stack), [
        "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]"])


def acknowledge_access(stack: FinisherAccessStack, bag_key_arns: list[str]) -> None:
    policy = stack.access.policy
    _acknowledge(policy, ["AwsSolutions::AwsSolutions-IAM5[Resource::*]"],
                 "AwsSolutions::AwsSolutions-IAM5[Resource::*]@Finisher")
    _acknowledge_bag_keys(policy, bag_key_arns)


def apply_suppressions(stacks: EnvironmentStacks) -> None:
    """Acknowledge exactly the findings the design accepts, each on the construct it concerns."""
    for stack in stacks.regional.values():
        acknowledge_regional(stack, stack.notify.head_object_arns)
    acknowledge_access(stacks.access, stacks.access.bag_key_arns)
