"""EventBridge delivery of "Object Restore Completed" from the imported staging buckets to the notify function."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

RESTORE_COMPLETED = "Object Restore Completed"
#: a restored copy lives for days, so EventBridge may keep retrying for its maximum of a day before giving up
TARGET_MAX_EVENT_AGE = Duration.hours(24)
TARGET_RETRY_ATTEMPTS = 185


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


class RestoreEvents(Construct):
    """Imports the staging buckets (never created or replaced), turns on their EventBridge notifications
    while keeping their other notification configurations, and routes restore completions to ``function``."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket_names: Sequence[str],
                 key_suffixes: Sequence[str], function: lambda_.IFunction, failure_queue: sqs.IQueue) -> None:
        super().__init__(scope, construct_id)
        self.buckets: list[s3.IBucket] = []
        for bucket_name in bucket_names:
            bucket = s3.Bucket.from_bucket_name(self, f"Staging-{bucket_name}", bucket_name)
            # on an imported bucket this renders Custom::S3BucketNotifications with Managed: false, which merges
            bucket.enable_event_bridge_notification()
            self.buckets.append(bucket)
        self.rule = events.Rule(
            self, "RestoreCompleted",
            description="S3 restore completions of staging bags, to the notify_restore function",
            event_pattern=restore_completed_pattern(bucket_names, key_suffixes),
            targets=[
                targets.LambdaFunction(
                    function,
                    max_event_age=TARGET_MAX_EVENT_AGE,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    dead_letter_queue=failure_queue,
                )
            ],
        )
