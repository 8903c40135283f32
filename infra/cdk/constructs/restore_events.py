"""EventBridge delivery of "Object Restore Completed" from the imported staging buckets to the notify function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from aws_cdk import CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

RESTORE_COMPLETED = "Object Restore Completed"
#: a restored copy lives for days, so EventBridge may keep retrying for its maximum of a day before giving up
TARGET_MAX_EVENT_AGE = Duration.hours(24)
TARGET_RETRY_ATTEMPTS = 185
#: CDK's singleton Lambda that applies notification settings to (imported) buckets
NOTIFICATIONS_HANDLER_PREFIX = "BucketNotificationsHandler"
HANDLER_LOG_RETENTION = logs.RetentionDays.THREE_MONTHS


def restore_completed_pattern(bucket_names: Sequence[str], key_suffixes: Sequence[str]) -> events.EventPattern:
    """Restore completions of keys ending in one of ``key_suffixes`` in one of ``bucket_names``."""
    return events.EventPattern(
        source=["aws.s3"],
        detail_type=[RESTORE_COMPLETED],
        detail={
            "bucket": {"name": sorted(bucket_names)},
            "object": {"key": [{"suffix": suffix} for suffix in key_suffixes]},
        },
    )


def handler_log_group(scope: Construct, removal_policy: RemovalPolicy) -> logs.LogGroup:
    """A log group with a retention for CDK's bucket-notifications handler (Lambda's own never expires),
    wired in through the function's LoggingConfig."""
    stack = Stack.of(scope)
    handler = next(c for c in stack.node.children if c.node.id.startswith(NOTIFICATIONS_HANDLER_PREFIX))
    function = cast(CfnResource, handler.node.default_child)
    log_group = logs.LogGroup(scope, "NotificationsHandlerLogs", retention=HANDLER_LOG_RETENTION,
                              removal_policy=removal_policy)
    function.add_property_override("LoggingConfig", {"LogGroup": log_group.log_group_name})
    return log_group


class RestoreEvents(Construct):
    """Imports the staging buckets (never created or replaced), turns on their EventBridge notifications
    while keeping their other notification configurations, routes restore completions to ``function`` and
    archives them on the default bus for ``archive_days`` (replay after an outage)."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket_names: Sequence[str],
                 key_suffixes: Sequence[str], function: lambda_.IFunction, failure_queue: sqs.IQueue,
                 archive_days: int, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.buckets: list[s3.IBucket] = []
        for bucket_name in bucket_names:
            bucket = s3.Bucket.from_bucket_name(self, f"Staging-{bucket_name}", bucket_name)
            # on an imported bucket this renders Custom::S3BucketNotifications with Managed: false, which merges
            bucket.enable_event_bridge_notification()
            self.buckets.append(bucket)
        self.handler_log_group = handler_log_group(self, removal_policy)
        pattern = restore_completed_pattern(bucket_names, key_suffixes)
        self.archive = events.Archive(
            self, "Archive",
            source_event_bus=events.EventBus.from_event_bus_name(self, "DefaultBus", "default"),
            event_pattern=pattern, retention=Duration.days(archive_days),
            description="Restore completions of staging bags, kept for replay through the notify rule",
        )
        self.rule = events.Rule(
            self, "RestoreCompleted",
            description="S3 restore completions of staging bags, to the notify_restore function",
            event_pattern=pattern,
            targets=[
                targets.LambdaFunction(
                    function,
                    max_event_age=TARGET_MAX_EVENT_AGE,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    dead_letter_queue=failure_queue,
                )
            ],
        )
