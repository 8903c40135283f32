"""A region's alarms and the encrypted SNS topic they notify.

CloudWatch alarms can only watch metrics of their own region, so every regional stack carries its own alarms
and topic; the dashboard (monitoring stack) is the only cross-region view.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

PERIOD = Duration.minutes(5)
CLOUDWATCH = "cloudwatch.amazonaws.com"


def alarm_source_conditions(stack: Stack) -> dict[str, dict[str, str]]:
    """Only this account's CloudWatch alarms in this region (confused-deputy guard for a service principal)."""
    return {
        "StringEquals": {"aws:SourceAccount": stack.account},
        "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"},
    }


#: the finisher's gauge (onprem/finisher/metrics.py), published without dimensions in the monitoring namespace
RESTORE_EXPIRY_METRIC = "HoursToEarliestRestoreExpiry"


#: the finisher's liveness (onprem/finisher/metrics.py): 1 per round (METRICS_INTERVAL) per region it polls
HEARTBEAT_METRIC = "FinisherHeartbeat"
#: five-minute periods without a heartbeat before the alarm: a restart or one lost send does not page anyone
HEARTBEAT_SILENT_PERIODS = 2


@dataclass(frozen=True)
class HeartbeatAlarm:
    """No finisher polls a region's queue: one alarm per region, in the region the finisher publishes to."""

    namespace: str
    regions: tuple[str, ...]


@dataclass(frozen=True)
class RestoreExpiryAlarm:
    """The alarm before expiry: in the region the finisher publishes its metrics to (``dashboard_region``)."""

    namespace: str
    threshold_hours: float


class RegionAlarms(Construct):
    """Alarms on the DLQ, the failure queue, the oldest queued work, the function's errors and lost async
    events, the rule's failed dead-letter deliveries and, where the finisher publishes, the earliest unsynced
    restore expiry and each region's finisher heartbeat (its absence is the alarm)."""

    def __init__(self, scope: Construct, construct_id: str, *, topic_name: str, alarm_prefix: str,
                 alarm_email: str | None, oldest_message_alarm_seconds: int, work_queue: sqs.IQueue,
                 dead_letter_queue: sqs.IQueue, failure_queue: sqs.IQueue, function: lambda_.IFunction,
                 rule: events.IRule, removal_policy: RemovalPolicy,
                 restore_expiry: RestoreExpiryAlarm | None = None, heartbeat: HeartbeatAlarm | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # the AWS-managed SNS key cannot be used by CloudWatch alarms, hence a customer key that lets them in
        self.key = kms.Key(
            self, "TopicKey", description=f"{topic_name}: encrypts alarm notifications", enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish",
            principals=[iam.ServicePrincipal(CLOUDWATCH)],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions=alarm_source_conditions(stack),
        ))
        self.topic = sns.Topic(
            self, "Topic", topic_name=topic_name, display_name=topic_name, master_key=self.key, enforce_ssl=True,
        )
        # enforce_ssl writes a topic policy that replaces SNS's default one, so CloudWatch must be let in by name
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish",
            principals=[iam.ServicePrincipal(CLOUDWATCH)],
            actions=["sns:Publish"],
            resources=[self.topic.topic_arn],
            conditions=alarm_source_conditions(stack),
        ))
        self.email_subscription: sns.Subscription | None = None
        if alarm_email:
            self.email_subscription = self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        action = cloudwatch_actions.SnsAction(self.topic)
        visible = "ApproximateNumberOfMessagesVisible"
        self.alarms: list[cloudwatch.Alarm] = [
            self._alarm("DeadLetters", f"{alarm_prefix}-dlq-not-empty",
                        "A work was received too many times and moved to the DLQ: inspect and redrive it.",
                        dead_letter_queue.metric(visible, statistic="Maximum", period=PERIOD), 1),
            self._alarm("Failures", f"{alarm_prefix}-notify-failures",
                        "A restore event could not be delivered or handled: see the failure queue.",
                        failure_queue.metric(visible, statistic="Maximum", period=PERIOD), 1),
            self._alarm("OldestWork", f"{alarm_prefix}-oldest-work",
                        "A queued work is older than the alarm limit; its restored copy may expire before it is "
                        "synced: check the finisher.",
                        work_queue.metric("ApproximateAgeOfOldestMessage", statistic="Maximum", period=PERIOD),
                        oldest_message_alarm_seconds),
            self._alarm("NotifyErrors", f"{alarm_prefix}-notify-errors",
                        "The notify_restore function failed: see its logs.",
                        function.metric_errors(statistic="Sum", period=PERIOD), 1),
            self._alarm("NotifyDestinationFailures", f"{alarm_prefix}-notify-destination-failures",
                        "A failed async invocation could not be written to the failure queue: the event is lost; "
                        "see the function's logs and the failure queue's policy.",
                        function.metric("DestinationDeliveryFailures", statistic="Sum", period=PERIOD), 1),
            self._alarm("NotifyEventsDropped", f"{alarm_prefix}-notify-events-dropped",
                        "Lambda dropped async restore events without running the function (event age or retries "
                        "exhausted, no destination reached): re-drive them from the EventBridge archive.",
                        function.metric("AsyncEventsDropped", statistic="Sum", period=PERIOD), 1),
            self._alarm("RuleDeadLetterFailures", f"{alarm_prefix}-rule-dlq-failures",
                        "EventBridge could neither invoke the function nor put the event on the failure queue: "
                        "re-drive it from the EventBridge archive.",
                        cloudwatch.Metric(namespace="AWS/Events", metric_name="InvocationsFailedToBeSentToDlq",
                                          dimensions_map={"RuleName": rule.rule_name}, statistic="Sum",
                                          period=PERIOD), 1),
        ]
        if restore_expiry is not None:
            self.alarms.append(self._alarm(
                "RestoreExpiry", f"{alarm_prefix}-restore-expiry",
                f"A restored copy of a work not yet synced expires within {restore_expiry.threshold_hours:g} h: "
                "finisher status --expiring; add slots or hosts (an expired copy is re-requested, at a cost).",
                cloudwatch.Metric(namespace=restore_expiry.namespace, metric_name=RESTORE_EXPIRY_METRIC,
                                  statistic="Minimum", period=PERIOD),
                restore_expiry.threshold_hours, cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD))
        if heartbeat is not None:
            self.alarms += [self._heartbeat_alarm(alarm_prefix, heartbeat.namespace, r) for r in heartbeat.regions]
        for alarm in self.alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

    def _heartbeat_alarm(self, alarm_prefix: str, namespace: str, region: str) -> cloudwatch.Alarm:
        return self._alarm(
            f"FinisherHeartbeat{region.replace('-', '').title()}", f"{alarm_prefix}-finisher-heartbeat-{region}",
            f"No finisher has polled the {region} work queue for {HEARTBEAT_SILENT_PERIODS * 5} min (no "
            "FinisherHeartbeat): check the finisher host, its service and its AWS credentials.",
            cloudwatch.Metric(namespace=namespace, metric_name=HEARTBEAT_METRIC, dimensions_map={"region": region},
                              statistic="Sum", period=PERIOD),
            1, cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            # silence is the failure this alarm exists for: no datum is breaching
            missing=cloudwatch.TreatMissingData.BREACHING, periods=HEARTBEAT_SILENT_PERIODS)

    def _alarm(self, construct_id: str, alarm_name: str, description: str, metric: cloudwatch.IMetric,
               threshold: float, comparison: cloudwatch.ComparisonOperator =
               cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD, *,
               missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
               periods: int = 1) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self, construct_id,
            alarm_name=alarm_name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            comparison_operator=comparison,
            # by default no datum is fine: the finisher has no unsynced work with an expiry ahead, a queue is quiet
            treat_missing_data=missing,
        )
