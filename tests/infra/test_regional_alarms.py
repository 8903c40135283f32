"""The regional alarms: they live next to their metrics and notify an encrypted, TLS-only topic."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

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
        assert {n: (a["MetricName"], a["Threshold"]) for n, a in alarms.items()} == {
            f"{prefix}-dlq-not-empty": ("ApproximateNumberOfMessagesVisible", 1),
            f"{prefix}-notify-failures": ("ApproximateNumberOfMessagesVisible", 1),
            f"{prefix}-oldest-work": ("ApproximateAgeOfOldestMessage", environment.oldest_message_alarm_seconds),
            f"{prefix}-notify-errors": ("Errors", 1),
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
