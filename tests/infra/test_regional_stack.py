"""The regional stacks: imported buckets, EventBridge rule, queues, notify function, idempotency table."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk.assertions import Match, Template

from config.model import BucketConfig, QueuePolicy, RegionConfig
from config.routing import RoutingTable
from infra.cdk.constructs.work_queues import QueueRetentionError, WorkQueues, restore_window_seconds
from tests.infra.conftest import Synthesis, only, queue_named, resources_of

FOURTEEN_DAYS = 14 * 86400


def test_one_regional_stack_per_region_with_buckets(synthesis: Synthesis) -> None:
    assert sorted(synthesis.regional_keys()) == sorted(f"regional:{r.region}" for r in synthesis.environment.regions)


def test_regional_stack_resource_counts(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        template = synthesis.assertions(key)
        template.resource_count_is("AWS::SQS::Queue", 3)
        template.resource_count_is("AWS::SQS::QueuePolicy", 3)
        template.resource_count_is("AWS::DynamoDB::Table", 1)
        template.resource_count_is("AWS::Events::Rule", 1)
        template.resource_count_is("Custom::S3BucketNotifications", len(region.buckets))
        # the finisher's region (dashboard_region) also alarms before a restored copy expires, and on the
        # heartbeat of every region's finisher
        home = region.region == synthesis.environment.monitoring.dashboard_region
        template.resource_count_is("AWS::CloudWatch::Alarm", 8 + len(synthesis.environment.regions) if home else 7)
        template.resource_count_is("AWS::SNS::Topic", 1)
        # the notify function and CDK's bucket-notifications handler
        template.resource_count_is("AWS::Lambda::Function", 2)


def test_staging_buckets_are_imported_never_created(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        assert resources_of(template, "AWS::S3::Bucket") == {}
        assert resources_of(template, "AWS::S3::BucketPolicy") == {}
        notifications = resources_of(template, "Custom::S3BucketNotifications")
        assert sorted(n["Properties"]["BucketName"] for n in notifications.values()) == sorted(
            b.name for b in region.buckets)
        for notification in notifications.values():
            # Managed: false merges with the bucket's existing notification configurations instead of replacing them
            assert notification["Properties"]["Managed"] is False
            assert notification["Properties"]["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}


def test_work_queue_is_encrypted_redriven_and_matches_the_finisher_heartbeat(synthesis: Synthesis) -> None:
    policy = synthesis.environment.queues
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        dlq_id, dlq = queue_named(template, region.dlq_name)
        _, work = queue_named(template, region.queue_name)
        assert work["Properties"] == {
            "QueueName": region.queue_name,
            "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": policy.retention_days * 86400,
            "VisibilityTimeout": policy.visibility_timeout_s,
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                              "maxReceiveCount": policy.max_receive_count},
        }
        work_arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                      f":sqs:{region.region}:000000000000:{region.queue_name}"]]}
        assert dlq["Properties"] == {"QueueName": region.dlq_name, "SqsManagedSseEnabled": True,
                                     "MessageRetentionPeriod": FOURTEEN_DAYS,
                                     "RedriveAllowPolicy": {"redrivePermission": "byQueue",
                                                            "sourceQueueArns": [work_arn]}}
        # a dead-lettered message keeps its enqueue time: the DLQ must keep it strictly longer
        assert dlq["Properties"]["MessageRetentionPeriod"] > work["Properties"]["MessageRetentionPeriod"]


def test_work_queue_keeps_a_message_through_the_restore_window(synthesis: Synthesis) -> None:
    environment = synthesis.environment
    window = restore_window_seconds(environment.queues, environment.restore.days)
    for key, region in synthesis.regions():
        _, work = queue_named(synthesis.template(key), region.queue_name)
        assert work["Properties"]["MessageRetentionPeriod"] >= window


def _queues(stack_name: str, queue_policy: QueuePolicy, restore_days: int) -> Stack:
    stack = Stack(App(), stack_name)
    region = RegionConfig(region="us-east-1", queue_name="works", dlq_name="works-dlq",
                          buckets=[BucketConfig(name="staging.example.org", collection="BDRC")])
    WorkQueues(stack, "Queues", region=region, queue_policy=queue_policy, restore_days=restore_days,
               failure_queue_name="failures", removal_policy=RemovalPolicy.DESTROY)
    return stack


def test_retention_shorter_than_the_restore_window_fails_the_synth() -> None:
    with pytest.raises(QueueRetentionError, match=r"works: queues.retention_days 10 .* restore window of "
                                                  r"868500 s \(restore.days 10 \+ max_receive_count 5"):
        _queues("Short", QueuePolicy(retention_days=10), restore_days=10)


def test_retention_as_long_as_the_dlq_fails_the_synth() -> None:
    with pytest.raises(QueueRetentionError, match="must be below the DLQ's 14 days"):
        _queues("AsLong", QueuePolicy(retention_days=14), restore_days=5)


def test_retention_within_both_bounds_is_taken() -> None:
    template = Template.from_stack(_queues("Fits", QueuePolicy(retention_days=11), restore_days=10))
    template.has_resource_properties("AWS::SQS::Queue", {"QueueName": "works",
                                                         "MessageRetentionPeriod": 11 * 86400})


def test_failure_queue_is_encrypted_and_keeps_fourteen_days(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        _, failures = queue_named(synthesis.template(key), synthesis.environment.failure_queue_name(region.region))
        assert failures["Properties"]["SqsManagedSseEnabled"] is True
        assert failures["Properties"]["MessageRetentionPeriod"] == FOURTEEN_DAYS


def test_every_queue_refuses_requests_without_tls(synthesis: Synthesis) -> None:
    for key, _region in synthesis.regions():
        template = synthesis.template(key)
        queue_ids = set(resources_of(template, "AWS::SQS::Queue"))
        protected = set()
        for policy in resources_of(template, "AWS::SQS::QueuePolicy").values():
            statements = policy["Properties"]["PolicyDocument"]["Statement"]
            if any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   and s["Action"] == "sqs:*" for s in statements):
                protected |= {q["Ref"] for q in policy["Properties"]["Queues"]}
        assert protected == queue_ids


def test_rule_matches_restore_completions_of_bags_in_the_region_buckets(synthesis: Synthesis) -> None:
    suffixes = list(synthesis.environment.notify.accepted_suffixes())
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        _, rule = only(template, "AWS::Events::Rule")
        assert rule["Properties"]["EventPattern"] == {
            "source": ["aws.s3"],
            "detail-type": ["Object Restore Completed"],
            "detail": {"bucket": {"name": sorted(b.name for b in region.buckets)},
                       "object": {"key": [{"suffix": s} for s in suffixes]}},
        }


def test_plain_zips_are_matched_only_where_accepted(synthesized: dict[str, Synthesis]) -> None:
    def key_filters(synthesis: Synthesis) -> list[dict[str, str]]:
        _, rule = only(synthesis.template(synthesis.regional_keys()[0]), "AWS::Events::Rule")
        return rule["Properties"]["EventPattern"]["detail"]["object"]["key"]
    assert key_filters(synthesized["dev"]) == [{"suffix": ".bag.zip"}, {"suffix": ".zip"}]
    assert key_filters(synthesized["prod"]) == [{"suffix": ".bag.zip"}]


def test_rule_target_has_retry_policy_and_the_failure_queue_as_dlq(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        failures_id, _ = queue_named(template, synthesis.environment.failure_queue_name(region.region))
        function_id, _ = _notify_function(template)
        _, rule = only(template, "AWS::Events::Rule")
        [target] = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [failures_id, "Arn"]}}


def _notify_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    matches = [(k, v) for k, v in resources_of(template, "AWS::Lambda::Function").items()
               if v["Properties"].get("Handler") == "lambdas.notify_restore.handler.lambda_handler"]
    assert len(matches) == 1
    return matches[0]


def test_notify_function_runtime_architecture_layer_and_sizing(synthesis: Synthesis) -> None:
    notify = synthesis.environment.notify
    for key, region in synthesis.regions():
        _, function = _notify_function(synthesis.template(key))
        properties = function["Properties"]
        assert properties["FunctionName"] == synthesis.environment.notify_function_name(region.region)
        assert properties["Runtime"] == "python3.13"
        assert properties["Architectures"] == ["arm64"]
        layer_id, _ = only(synthesis.template(key), "AWS::Lambda::LayerVersion")  # ours (test_powertools_layer)
        assert properties["Layers"] == [{"Ref": layer_id}]
        assert properties["MemorySize"] == notify.memory_mb
        assert properties["Timeout"] == notify.timeout_s
        assert properties["TracingConfig"] == {"Mode": "Active"}


def test_notify_function_environment(synthesis: Synthesis) -> None:
    environment = synthesis.environment
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        _, function = _notify_function(template)
        variables = function["Properties"]["Environment"]["Variables"]
        table_id, _ = only(template, "AWS::DynamoDB::Table")
        failures_id, _ = queue_named(template, environment.failure_queue_name(region.region))
        expected_plain = {
            "IDEMPOTENCY_DAYS": str(environment.notify.idempotency_days),
            "ACCEPTED_SUFFIXES": ",".join(environment.notify.accepted_suffixes()),
            "HEAD_OBJECT": "true" if environment.notify.head_object else "false",
            "POWERTOOLS_SERVICE_NAME": "notify_restore",
            "POWERTOOLS_METRICS_NAMESPACE": environment.monitoring.namespace,
            "POWERTOOLS_LOG_LEVEL": environment.notify.log_level,
        }
        assert {k: variables[k] for k in expected_plain} == expected_plain
        assert variables["IDEMPOTENCY_TABLE"] == {"Ref": table_id}
        assert variables["FAILURE_QUEUE_URL"] == {"Ref": failures_id}
        assert set(variables) == {*expected_plain, "IDEMPOTENCY_TABLE", "FAILURE_QUEUE_URL", "ROUTING_TABLE"}


def test_routing_table_holds_only_the_region_buckets_and_its_own_queue(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        work_id, _ = queue_named(template, region.queue_name)
        _, function = _notify_function(template)
        parts = function["Properties"]["Environment"]["Variables"]["ROUTING_TABLE"]["Fn::Join"][1]
        # substitute the queue URL token by a URL to check the JSON is a valid routing table
        text = "".join(p if isinstance(p, str) else f"https://sqs/{p['Ref']}" for p in parts)
        table = RoutingTable.from_env(text)
        assert sorted(table.root) == sorted(b.name for b in region.buckets)
        for bucket in region.buckets:
            route = table.route_for(bucket.name)
            assert route is not None
            assert (route.collection, route.region, route.queue_url) == (
                bucket.collection, region.region, f"https://sqs/{work_id}")


def test_async_invocations_fail_over_to_the_failure_queue(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        failures_id, _ = queue_named(template, synthesis.environment.failure_queue_name(region.region))
        function_id, _ = _notify_function(template)
        _, invoke_config = only(template, "AWS::Lambda::EventInvokeConfig")
        assert invoke_config["Properties"] == {
            "FunctionName": {"Ref": function_id},
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 6 * 3600,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [failures_id, "Arn"]}}},
        }


def test_log_group_has_explicit_retention(synthesis: Synthesis) -> None:
    for key, region in synthesis.regions():
        template = synthesis.assertions(key)
        template.has_resource_properties("AWS::Logs::LogGroup", {
            "LogGroupName": f"/aws/lambda/{synthesis.environment.notify_function_name(region.region)}",
            "RetentionInDays": 90,
        })


def test_idempotency_table_is_what_powertools_expects(synthesis: Synthesis) -> None:
    retain = "Retain" if synthesis.environment.name == "prod" else "Delete"
    for key, region in synthesis.regions():
        template = synthesis.assertions(key)
        template.has_resource("AWS::DynamoDB::Table", {
            "Properties": {
                "TableName": synthesis.environment.idempotency_table_name(region.region),
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
                "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
            "DeletionPolicy": retain,
            "UpdateReplacePolicy": retain,
        })


def _statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    policies = [p for p in resources_of(template, "AWS::IAM::Policy").values()
                if {"Ref": role_id} in p["Properties"]["Roles"]]
    assert len(policies) == 1
    return policies[0]["Properties"]["PolicyDocument"]["Statement"]


def test_notify_role_is_exactly_least_privilege(synthesis: Synthesis) -> None:
    environment = synthesis.environment
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        _, function = _notify_function(template)
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        role = template["Resources"][role_id]["Properties"]
        assert "ManagedPolicyArns" not in role
        assert role["AssumeRolePolicyDocument"]["Statement"] == [{
            "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]
        [log_id] = [k for k, g in resources_of(template, "AWS::Logs::LogGroup").items()
                    if g["Properties"].get("LogGroupName") == f"/aws/lambda/{function['Properties']['FunctionName']}"]
        table_id, _ = only(template, "AWS::DynamoDB::Table")
        work_id, _ = queue_named(template, region.queue_name)
        failures_id, _ = queue_named(template, environment.failure_queue_name(region.region))
        expected = [
            {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": {"Fn::GetAtt": [log_id, "Arn"]}},
            {"Sid": "SendRestoredWorks", "Effect": "Allow", "Action": "sqs:SendMessage",
             "Resource": {"Fn::GetAtt": [work_id, "Arn"]}},
            {"Sid": "UseIdempotencyTable", "Effect": "Allow",
             "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
             "Resource": {"Fn::GetAtt": [table_id, "Arn"]}},
        ]
        if environment.notify.head_object:
            arns = [f"arn:aws:s3:::{b.name}/*{s}" for b in region.buckets
                    for s in environment.notify.accepted_suffixes()]
            expected.append({"Sid": "HeadStagedBags", "Effect": "Allow",
                             "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                             "Resource": arns[0] if len(arns) == 1 else arns})
        expected += [
            {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
             "Resource": {"Fn::GetAtt": [failures_id, "Arn"]}},
        ]
        assert _statements(template, role_id) == expected


def test_head_object_permission_follows_the_config(synthesized: dict[str, Synthesis]) -> None:
    def sids(synthesis: Synthesis) -> set[str]:
        template = synthesis.template(synthesis.regional_keys()[0])
        _, function = _notify_function(template)
        return {s.get("Sid") for s in _statements(template, function["Properties"]["Role"]["Fn::GetAtt"][0])}
    assert "HeadStagedBags" not in sids(synthesized["dev"])  # dev: head_object false
    assert "HeadStagedBags" in sids(synthesized["prod"])


def test_eventbridge_may_invoke_the_function_only_from_the_rule(synthesis: Synthesis) -> None:
    for key, _region in synthesis.regions():
        template = synthesis.assertions(key)
        template.has_resource_properties("AWS::Lambda::Permission", {
            "Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [Match.string_like_regexp("^RestoreEventsRestoreCompleted"), "Arn"]},
        })


def test_regional_outputs_name_the_queues(synthesis: Synthesis) -> None:
    for key, _region in synthesis.regions():
        outputs = synthesis.template(key)["Outputs"]
        assert {"WorkQueueUrl", "DeadLetterQueueUrl", "FailureQueueUrl", "AlarmTopicArn"} <= set(outputs)


def test_prod_retains_stateful_resources_and_dev_cleans_up(synthesized: dict[str, Synthesis]) -> None:
    for name, policy in (("prod", "Retain"), ("dev", "Delete")):
        synthesis = synthesized[name]
        for key in synthesis.regional_keys():
            template = synthesis.template(key)
            for resource_type in ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::Logs::LogGroup"):
                assert {r["DeletionPolicy"] for r in resources_of(template, resource_type).values()} == {policy}


def test_notifications_handler_logs_to_a_log_group_that_expires(synthesis: Synthesis) -> None:
    for key, _region in synthesis.regions():
        template = synthesis.template(key)
        [handler] = [f for k, f in resources_of(template, "AWS::Lambda::Function").items()
                     if k.startswith("BucketNotificationsHandler")]
        log_ref = handler["Properties"]["LoggingConfig"]["LogGroup"]
        log_group = template["Resources"][log_ref["Ref"]]
        assert log_group["Type"] == "AWS::Logs::LogGroup"
        assert log_group["Properties"]["RetentionInDays"] == 90


def test_restore_completions_are_archived_for_replay(synthesis: Synthesis) -> None:
    days = synthesis.environment.notify.event_archive_days
    for key, region in synthesis.regions():
        template = synthesis.template(key)
        _, rule = only(template, "AWS::Events::Rule")
        _, archive = only(template, "AWS::Events::Archive")
        assert archive["Properties"]["RetentionDays"] == days
        assert archive["Properties"]["EventPattern"] == rule["Properties"]["EventPattern"]
        assert archive["Properties"]["SourceArn"] == {"Fn::Join": ["", [
            "arn:", {"Ref": "AWS::Partition"}, f":events:{region.region}:000000000000:event-bus/default"]]}
