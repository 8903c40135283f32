"""A region's work queue, its dead-letter queue and the notify function's failure queue."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from config.model import QueuePolicy, RegionConfig

#: SQS's maximum; a dead-letter queue must keep a message at least as long as its source queue did
MAX_RETENTION = Duration.days(14)


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
                 failure_queue_name: str, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = secure_queue(
            self, "DeadLetterQueue", queue_name=region.dlq_name, removal_policy=removal_policy,
            retention_period=MAX_RETENTION,
        )
        self.work_queue = secure_queue(
            self, "WorkQueue", queue_name=region.queue_name, removal_policy=removal_policy,
            retention_period=Duration.days(queue_policy.retention_days),
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
