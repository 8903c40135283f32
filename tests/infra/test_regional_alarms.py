"""The regional alarms: they live next to their metrics and notify an encrypted, TLS-only topic."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from onprem.finisher.metrics import LogMetrics
from tests.infra.conftest import Synthesis, only, queue_named, resources_of


def test_alarms_notify_the_encrypted_topic(synthesis: Synthesis) -> None:
    environment = synthesis.environment
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        topic_id, topic = only(template, "AWS::SNS::Topic")
        key_id, _ = only(template, "AWS::KMS::Key")
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        alarms = {a["Properties"]["AlarmName"]: a["Properties"]
                  for a in resources_of(template, "AWS::CloudWatch::Alarm").values()}
        prefix = f"{environment.resource_prefix}-{region.region}"
        alarms.pop(f"{prefix}-restore-expiry", None)  # the dashboard region's alone: its own test below
        for other in environment.regions:  # the dashboard region's too: their own test below
            alarms.pop(f"{prefix}-finisher-heartbeat-{other.region}", None)
        assert {n: (a["MetricName"], a["Threshold"]) for n, a in alarms.items()} == {
            f"{prefix}-dlq-not-empty": ("ApproximateNumberOfMessagesVisible", 1),
            f"{prefix}-notify-failures": ("ApproximateNumberOfMessagesVisible", 1),
            f"{prefix}-oldest-work": ("ApproximateAgeOfOldestMessage", environment.oldest_message_alarm_seconds),
            f"{prefix}-notify-errors": ("Errors", 1),
            f"{prefix}-notify-destination-failures": ("DestinationDeliveryFailures", 1),
            f"{prefix}-notify-events-dropped": ("AsyncEventsDropped", 1),
            f"{prefix}-rule-dlq-failures": ("InvocationsFailedToBeSentToDlq", 1),
        }
        for alarm in alarms.values():
            assert alarm["AlarmActions"] == [{"Ref": topic_id}]
            assert alarm["OKActions"] == [{"Ref": topic_id}]
            assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert json.dumps(alarms[f"{prefix}-dlq-not-empty"]["Dimensions"]) == json.dumps(
            [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_named(template, region.dlq_name)[0], "QueueName"]}}])


def test_topic_refuses_requests_without_tls(synthesis: Synthesis) -> None:
    for key, _region in synthesis.regions():
        template = synthesis.assertions(key)
        template.has_resource_properties("AWS::SNS::TopicPolicy", {"PolicyDocument": {"Statement": Match.array_with([
            Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
        ])}})


def test_alarm_email_is_subscribed_only_when_configured(synthesized: dict[str, Synthesis]) -> None:
    prod = synthesized["prod"]
    for key in prod.regional_keys():
        _, subscription = only(prod.template(key), "AWS::SNS::Subscription")
        assert subscription["Properties"]["Protocol"] == "email"
        assert subscription["Properties"]["Endpoint"] == prod.environment.monitoring.alarm_email
    dev = synthesized["dev"]
    for key in dev.regional_keys():
        assert resources_of(dev.template(key), "AWS::SNS::Subscription") == {}


def _alarm_source(region: str) -> dict[str, Any]:
    account = "000000000000"
    return {
        "StringEquals": {"aws:SourceAccount": account},
        "ArnLike": {"aws:SourceArn": {"Fn::Join": ["", [
            "arn:", {"Ref": "AWS::Partition"}, f":cloudwatch:{region}:{account}:alarm:*"]]}},
    }


def test_topic_policy_lets_this_account_s_cloudwatch_alarms_publish(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        topic_id, _ = only(template, "AWS::SNS::Topic")
        _, policy = only(template, "AWS::SNS::TopicPolicy")
        assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
        [allow] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
        assert allow == {
            "Sid": "CloudWatchAlarmsPublish", "Effect": "Allow", "Action": "sns:Publish",
            "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Resource": {"Ref": topic_id},
            "Condition": _alarm_source(region.region),
        }


def test_key_lets_only_this_account_s_alarms_use_it(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        _, kms_key = only(synthesis.template(key), "AWS::KMS::Key")
        [grant] = [s for s in kms_key["Properties"]["KeyPolicy"]["Statement"]
                   if s.get("Sid") == "CloudWatchAlarmsPublish"]
        assert grant["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        assert grant["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
        assert grant["Condition"] == _alarm_source(region.region)


def test_lost_async_events_and_failed_dead_letters_raise_alarms(synthesis: Synthesis) -> None:
    for key, _region in synthesis.regions():
        template = synthesis.template(key)
        rule_id, _ = only(template, "AWS::Events::Rule")
        alarms = {a["Properties"]["MetricName"]: a["Properties"]
                  for a in resources_of(template, "AWS::CloudWatch::Alarm").values()}
        for metric in ("DestinationDeliveryFailures", "AsyncEventsDropped"):
            assert alarms[metric]["Namespace"] == "AWS/Lambda"
            assert alarms[metric]["Statistic"] == "Sum"
            [dimension] = alarms[metric]["Dimensions"]
            assert dimension["Name"] == "FunctionName"
        rule_alarm = alarms["InvocationsFailedToBeSentToDlq"]
        assert rule_alarm["Namespace"] == "AWS/Events"
        assert rule_alarm["Dimensions"] == [{"Name": "RuleName", "Value": {"Ref": rule_id}}]


def test_the_finisher_s_region_alarms_before_a_restored_copy_expires(synthesis: Synthesis) -> None:
    environment = synthesis.environment
    home = environment.monitoring.dashboard_region
    for key, region in synthesis.regions():
        template = synthesis.assertions(key)
        name = f"{environment.resource_prefix}-{region.region}-restore-expiry"
        found = template.find_resources("AWS::CloudWatch::Alarm", {"Properties": {"AlarmName": name}})
        if region.region != home:
            assert found == {}, f"{name}: the finisher publishes its metrics in {home} only"
            continue
        template.has_resource_properties("AWS::CloudWatch::Alarm", {
            "AlarmName": name, "Namespace": environment.monitoring.namespace,
            "MetricName": "HoursToEarliestRestoreExpiry", "Statistic": "Minimum", "Period": 300,
            "Threshold": environment.monitoring.restore_expiry_alarm_hours,
            "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "notBreaching",
            "AlarmActions": Match.any_value(), "OKActions": Match.any_value(),
        })
        assert "Dimensions" not in next(iter(found.values()))["Properties"]  # the finisher puts it without any


def test_a_silent_finisher_raises_each_region_s_heartbeat_alarm_where_it_publishes(synthesis: Synthesis) -> None:
    """One alarm per region whose queue the finisher polls, on the FinisherHeartbeat the finisher puts with that
    region as its dimension; no datum at all (finisher down, no credentials) is breaching."""
    environment = synthesis.environment
    home = environment.monitoring.dashboard_region
    heartbeat = LogMetrics()
    heartbeat.heartbeat([r.region for r in environment.regions], "archive-host")
    put = {tuple(sorted(dimensions.items())) for name, dimensions, _ in heartbeat.points if "region" in dimensions}
    for key, region in synthesis.regions():
        template = synthesis.assertions(key)
        found = template.find_resources("AWS::CloudWatch::Alarm", {"Properties": {"MetricName": "FinisherHeartbeat"}})
        if region.region != home:
            assert found == {}, f"the finisher publishes its metrics in {home} only"
            continue
        assert len(found) == len(environment.regions)
        watched = set()
        for watched_region in environment.regions:
            name = f"{environment.resource_prefix}-{home}-finisher-heartbeat-{watched_region.region}"
            template.has_resource_properties("AWS::CloudWatch::Alarm", {
                "AlarmName": name, "Namespace": environment.monitoring.namespace,
                "MetricName": "FinisherHeartbeat", "Statistic": "Sum", "Period": 300, "Threshold": 1,
                "Dimensions": [{"Name": "region", "Value": watched_region.region}],
                "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching",
                "EvaluationPeriods": 2, "DatapointsToAlarm": 2,
                "AlarmActions": Match.any_value(), "OKActions": Match.any_value(),
            })
        for alarm in found.values():
            [dimension] = alarm["Properties"]["Dimensions"]
            watched.add(((dimension["Name"], dimension["Value"]),))
        assert watched == put  # the alarms watch exactly the dimensions the finisher puts
