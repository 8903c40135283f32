"""A region's work queue, its dead-letter queue and the notify function's failure queue."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from config.model import QueuePolicy, RegionConfig

#: SQS's maximum; the DLQ and the failure queue keep a message this long
MAX_RETENTION = Duration.days(14)
MAX_RETENTION_SECONDS = 14 * 86400


class QueueRetentionError(ValueError):
    """The work queue's retention does not fit between the restore window and the DLQ's retention."""


def restore_window_seconds(queue_policy: QueuePolicy, restore_days: int) -> int:
    """How long a work's message must survive on the work queue: the restored copy's lifetime
    (``restore.days``) plus every receive the finisher may make, each hiding it for the visibility timeout."""
    return restore_days * 86400 + queue_policy.max_receive_count * queue_policy.visibility_timeout_s


def check_work_queue_retention(queue_name: str, queue_policy: QueuePolicy, restore_days: int) -> int:
    """The work queue's retention in seconds, or QueueRetentionError naming the queue and both bounds.

    SQS keeps a message's original enqueue time when it moves to the DLQ, so the DLQ must keep messages
    longer than the work queue or a dead-lettered work can expire the moment it arrives."""
    retention = queue_policy.retention_days * 86400
    window = restore_window_seconds(queue_policy, restore_days)
    if retention < window:
        raise QueueRetentionError(
            f"{queue_name}: queues.retention_days {queue_policy.retention_days} ({retention} s) does not cover the "
            f"restore window of {window} s (restore.days {restore_days} + max_receive_count "
            f"{queue_policy.max_receive_count} x visibility_timeout_s {queue_policy.visibility_timeout_s}): a "
            f"restored work could leave the queue unsynced; raise queues.retention_days or lower restore.days")
    if retention >= MAX_RETENTION_SECONDS:
        raise QueueRetentionError(
            f"{queue_name}: queues.retention_days {queue_policy.retention_days} must be below the DLQ's 14 days "
            f"(SQS's maximum): a message keeps its enqueue time when dead-lettered and would expire on arrival")
    return retention


def secure_queue(scope: Construct, construct_id: str, *, queue_name: str, removal_policy: RemovalPolicy,
                 **queue_props: object) -> sqs.Queue:
    """A queue with SQS-managed encryption at rest and a policy that refuses any request without TLS."""
    queue = sqs.Queue(
        scope, construct_id,
        queue_name=queue_name,
        # SQS-managed keys need no key policy for EventBridge, Lambda destinations or the finisher
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        **queue_props,
    )
    queue.apply_removal_policy(removal_policy)
    return queue


class WorkQueues(Construct):
    """``work_queue`` (the finisher's input), ``dead_letter_queue`` (after ``max_receive_count`` receives) and
    ``failure_queue`` (what the Lambda or the EventBridge target could not deliver)."""

    def __init__(self, scope: Construct, construct_id: str, *, region: RegionConfig, queue_policy: QueuePolicy,
                 restore_days: int, failure_queue_name: str, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        retention = check_work_queue_retention(region.queue_name, queue_policy, restore_days)
        # the work queue's ARN from its name: a reference to the queue itself would be a circular dependency
        work_queue_arn = Stack.of(self).format_arn(service="sqs", resource=region.queue_name)
        self.dead_letter_queue = secure_queue(
            self, "DeadLetterQueue", queue_name=region.dlq_name, removal_policy=removal_policy,
            retention_period=MAX_RETENTION,
            redrive_allow_policy=sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[sqs.Queue.from_queue_arn(self, "WorkQueueArn", work_queue_arn)],
            ),
        )
        self.work_queue = secure_queue(
            self, "WorkQueue", queue_name=region.queue_name, removal_policy=removal_policy,
            retention_period=Duration.seconds(retention),
            # the finisher extends visibility every third of this while it works on a message
            visibility_timeout=Duration.seconds(queue_policy.visibility_timeout_s),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=queue_policy.max_receive_count, queue=self.dead_letter_queue,
            ),
        )
        self.failure_queue = secure_queue(
            self, "FailureQueue", queue_name=failure_queue_name, removal_policy=removal_policy,
            retention_period=MAX_RETENTION,
        )
