"""A region's alarms and the encrypted SNS topic they notify.

CloudWatch alarms can only watch metrics of their own region, so every regional stack carries its own alarms
and topic; the dashboard (monitoring stack) is the only cross-region view.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

PERIOD = Duration.minutes(5)


class RegionAlarms(Construct):
    """Alarms on the DLQ, the failure queue, the oldest queued work and the function's errors."""

    def __init__(self, scope: Construct, construct_id: str, *, topic_name: str, alarm_prefix: str,
                 alarm_email: str | None, oldest_message_alarm_seconds: int, work_queue: sqs.IQueue,
                 dead_letter_queue: sqs.IQueue, failure_queue: sqs.IQueue, function: lambda_.IFunction,
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        # the AWS-managed SNS key cannot be used by CloudWatch alarms, hence a customer key that lets them in
        self.key = kms.Key(
            self, "TopicKey", description=f"{topic_name}: encrypts alarm notifications", enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
        ))
        self.topic = sns.Topic(
            self, "Topic", topic_name=topic_name, display_name=topic_name, master_key=self.key, enforce_ssl=True,
        )
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
        ]
        for alarm in self.alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

    def _alarm(self, construct_id: str, alarm_name: str, description: str, metric: cloudwatch.IMetric,
               threshold: float) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self, construct_id,
            alarm_name=alarm_name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
