"""One region's stack: restore events → notify function → work queue, plus the region's alarms."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Environment, RemovalPolicy, Stack
from constructs import Construct

from config.model import EnvironmentConfig, RegionConfig
from infra.cdk.constructs.alarms import HeartbeatAlarm, RegionAlarms, RestoreExpiryAlarm
from infra.cdk.constructs.notify_function import NotifyFunction
from infra.cdk.constructs.restore_events import RestoreEvents
from infra.cdk.constructs.work_queues import WorkQueues


def removal_policy_for(environment: EnvironmentConfig) -> RemovalPolicy:
    """Prod keeps queues, tables, keys and logs when a stack is deleted; other environments clean up."""
    return RemovalPolicy.RETAIN if environment.name == "prod" else RemovalPolicy.DESTROY


class RegionalStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, environment: EnvironmentConfig,
                 region: RegionConfig, account: str, asset_dir: Path) -> None:
        super().__init__(
            scope, construct_id, env=Environment(account=account, region=region.region),
            description=f"bdrc-restore {environment.name}: restore events to the work queue in {region.region}",
        )
        removal = removal_policy_for(environment)
        name = region.region
        self.queues = WorkQueues(
            self, "Queues", region=region, queue_policy=environment.queues, restore_days=environment.restore.days,
            failure_queue_name=environment.failure_queue_name(name), removal_policy=removal,
        )
        self.notify = NotifyFunction(
            self, "Notify", environment=environment, region=region, asset_dir=asset_dir,
            work_queue=self.queues.work_queue, failure_queue=self.queues.failure_queue, removal_policy=removal,
        )
        self.events = RestoreEvents(
            self, "RestoreEvents", bucket_names=[b.name for b in region.buckets],
            key_suffixes=environment.notify.accepted_suffixes(), function=self.notify.function,
            failure_queue=self.queues.failure_queue, archive_days=environment.notify.event_archive_days,
            removal_policy=removal,
        )
        self.alarms = RegionAlarms(
            self, "Alarms", topic_name=f"{environment.resource_prefix}-{name}-alarms",
            alarm_prefix=f"{environment.resource_prefix}-{name}", alarm_email=environment.monitoring.alarm_email,
            oldest_message_alarm_seconds=environment.oldest_message_alarm_seconds,
            work_queue=self.queues.work_queue, dead_letter_queue=self.queues.dead_letter_queue,
            failure_queue=self.queues.failure_queue, function=self.notify.function, rule=self.events.rule,
            removal_policy=removal, restore_expiry=RestoreExpiryAlarm(
                environment.monitoring.namespace, environment.monitoring.restore_expiry_alarm_hours)
            if name == environment.monitoring.dashboard_region else None,
            # the finisher publishes in the dashboard's region: every region's heartbeat alarm lives there
            heartbeat=HeartbeatAlarm(environment.monitoring.namespace, tuple(r.region for r in environment.regions))
            if name == environment.monitoring.dashboard_region else None,
        )
        CfnOutput(self, "WorkQueueUrl", value=self.queues.work_queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.queues.dead_letter_queue.queue_url)
        CfnOutput(self, "FailureQueueUrl", value=self.queues.failure_queue.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn)
