"""cdk-nag (AwsSolutions + Serverless): no open finding, and exactly the acknowledged ones, each with a reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from aws_cdk import App

from config.loader import load_environment
from infra.cdk.app import PLACEHOLDER_ACCOUNT
from infra.cdk.lambda_asset import build_asset
from infra.cdk.nag import apply_nag_checks
from infra.cdk.stacks import build_stacks
from tests.infra.conftest import Synthesis

IAM4_BASIC = ("AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
              "AWSLambdaBasicExecutionRole]")
NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


def _acknowledged(synthesis: Synthesis) -> Counter[tuple[str, str]]:
    """(stack-relative construct path, acknowledged id) of every suppressed finding."""
    found: Counter[tuple[str, str]] = Counter()
    for plugin in synthesis.validation_report()["pluginReports"]:
        for violation in plugin["suppressedViolations"]:
            assert len(violation["reason"]) > 40, violation  # a written reason, not a placeholder
            for construct in violation["violatingConstructs"]:
                found[(construct["constructPath"], violation["acknowledgedId"])] += 1
    return found


def _expected_regional(synthesis: Synthesis, stack: str, region_name: str) -> Counter[tuple[str, str]]:
    environment = synthesis.environment
    region = next(r for r in environment.regions if r.region == region_name)
    expected = [
        ("Queues/DeadLetterQueue/Resource", "Serverless::Serverless-SQSRedrivePolicy"),
        ("Queues/FailureQueue/Resource", "Serverless::Serverless-SQSRedrivePolicy"),
        ("Queues/FailureQueue/Resource", "AwsSolutions::AwsSolutions-SQS3"),
        ("Notify/Function/Resource", "Serverless::Serverless-LambdaDLQ"),
        ("Notify/Function/Resource", "Serverless::Serverless-LambdaLatestVersion"),
        ("Notify/Function/Resource", "AwsSolutions::AwsSolutions-L1"),
        ("Notify/Role/DefaultPolicy/Resource", "AwsSolutions::AwsSolutions-IAM5[Resource::*]"),
        (f"{NOTIFICATIONS_HANDLER}/Role/Resource", IAM4_BASIC),
    ]
    if environment.notify.head_object:
        expected += [("Notify/Role/DefaultPolicy/Resource",
                      f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:aws:s3:::{b.name}/*{s}]")
                     for b in region.buckets for s in environment.notify.accepted_suffixes()]
    if environment.monitoring.alarm_email:
        expected.append((f"Alarms/Topic/{environment.monitoring.alarm_email}/Resource",
                         "Serverless::Serverless-SNSRedrivePolicy"))
    return Counter((f"{stack}/{path}", rule) for path, rule in expected)


def _expected_access(synthesis: Synthesis, stack: str) -> Counter[tuple[str, str]]:
    environment = synthesis.environment
    policy = f"{stack}/Finisher/Policy/Resource"
    expected = [(policy, "AwsSolutions::AwsSolutions-IAM5[Resource::*]")]
    expected += [(policy, f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:aws:s3:::{b.name}/*{s}]")
                 for r in environment.regions for b in r.buckets for s in environment.notify.accepted_suffixes()]
    return Counter(expected)


def test_both_packs_ran_and_left_no_open_finding(synthesis: Synthesis) -> None:
    reports = synthesis.validation_report()["pluginReports"]
    assert sorted(p["pluginName"] for p in reports) == ["AwsSolutions", "Serverless"]
    for plugin in reports:
        assert plugin["conclusion"] == "success"
        assert plugin["violations"] == []


def test_acknowledged_findings_are_exactly_the_expected_list_per_stack(synthesis: Synthesis) -> None:
    expected: Counter[tuple[str, str]] = Counter()
    for key in synthesis.regional_keys():
        expected += _expected_regional(synthesis, synthesis.stack_names[key], key.split(":", 1)[1])
    expected += _expected_access(synthesis, synthesis.stack_names["access"])
    assert _acknowledged(synthesis) == expected


def test_monitoring_stack_needs_no_acknowledgement(synthesis: Synthesis) -> None:
    monitoring = synthesis.stack_names["monitoring"]
    assert not [path for path, _ in _acknowledged(synthesis) if path.startswith(f"{monitoring}/")]


def test_acknowledgements_are_written_into_the_templates_with_their_reasons(synthesis: Synthesis) -> None:
    template = synthesis.template("access")
    [policy] = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    rules = policy["Metadata"]["cdk_nag"]["rules_to_suppress"]
    assert {r["id"] for r in rules} == {rule for _, rule in _expected_access(synthesis, "")}
    assert all(r["reason"] for r in rules)


def test_a_finding_without_acknowledgement_fails_the_synth(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path / "cdk.out"), context={"@aws-cdk/core:validationReportPrettyPrint": False})
    build_stacks(app, load_environment("dev"), account=PLACEHOLDER_ACCOUNT,
                 asset_dir=build_asset(tmp_path / "asset"))
    apply_nag_checks(app)  # the packs, but none of the acknowledgements
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "cdk.out" / "validation-report.json").read_text(encoding="utf-8"))
    open_rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert {"AwsSolutions-SQS3", "Serverless-LambdaDLQ"} <= open_rules
