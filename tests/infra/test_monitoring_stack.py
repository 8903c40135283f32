"""The dashboard stack: one dashboard in the home region showing every region's metrics."""

from __future__ import annotations

import json
from typing import Any

from infra.cdk.constructs.dashboard import FINISHER_BACKLOG_METRICS, FINISHER_COUNT_METRICS
from onprem.finisher.metrics import DROPPED_METRIC, UNITS, Datum, LogMetrics
from tests.infra.conftest import Synthesis, only


def _dashboard(synthesis: Synthesis) -> dict[str, Any]:
    """The dashboard body with the stack-region token replaced by the home region."""
    _, dashboard = only(synthesis.template("monitoring"), "AWS::CloudWatch::Dashboard")
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    home = synthesis.environment.monitoring.dashboard_region
    assert all(p == {"Ref": "AWS::Region"} for p in parts if not isinstance(p, str))
    return json.loads("".join(p if isinstance(p, str) else home for p in parts))


def _metrics(body: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """(namespace, metric, dimension pairs, region) of every plain metric on the dashboard."""
    found = []
    for widget in body["widgets"]:
        for metric in widget.get("properties", {}).get("metrics", []):
            if isinstance(metric[-1], dict) and "expression" in metric[-1]:
                continue
            options = metric[-1] if isinstance(metric[-1], dict) else {}
            names = [m for m in metric if isinstance(m, str)]
            found.append((names[0], names[1], tuple(names[2:]), options.get("region")))
    return found


def _expressions(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m[-1] for w in body["widgets"] for m in w.get("properties", {}).get("metrics", [])
            if isinstance(m[-1], dict) and "expression" in m[-1]]


def test_monitoring_stack_lives_in_the_home_region_and_holds_only_the_dashboard(synthesis: Synthesis) -> None:
    template = synthesis.template("monitoring")
    assert {r["Type"] for r in template["Resources"].values()} == {"AWS::CloudWatch::Dashboard"}
    home = synthesis.environment.monitoring.dashboard_region
    name = f"{synthesis.environment.resource_prefix}-restore"
    assert template["Outputs"]["DashboardUrl"]["Value"] == (
        f"https://{home}.console.aws.amazon.com/cloudwatch/home?region={home}#dashboards:name={name}")


def test_dashboard_shows_queues_and_function_of_every_region_in_that_region(synthesis: Synthesis) -> None:
    environment = synthesis.environment
    metrics = set(_metrics(_dashboard(synthesis)))
    for region in environment.regions:
        r = region.region
        failures = environment.failure_queue_name(r)
        function = environment.notify_function_name(r)
        expected = {
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", ("QueueName", region.queue_name), r),
            ("AWS/SQS", "ApproximateAgeOfOldestMessage", ("QueueName", region.queue_name), r),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", ("QueueName", region.dlq_name), r),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", ("QueueName", failures), r),
            *(("AWS/Lambda", name, ("FunctionName", function), r)
              for name in ("Invocations", "Errors", "Throttles", "Duration")),
        }
        assert expected <= metrics, expected - metrics


def test_dashboard_shows_notify_outcomes_from_the_emf_namespace(synthesis: Synthesis) -> None:
    namespace = synthesis.environment.monitoring.namespace
    metrics = set(_metrics(_dashboard(synthesis)))
    for region in synthesis.environment.regions:
        for name in ("RestoresRouted", "RestoresIgnored", "RestoresUnroutable", "DuplicatesSuppressed"):
            assert (namespace, name, ("service", "notify_restore"), region.region) in metrics


def test_dashboard_shows_the_finisher_metrics_by_search(synthesis: Synthesis) -> None:
    namespace = synthesis.environment.monitoring.namespace
    home = synthesis.environment.monitoring.dashboard_region
    expressions = {e["expression"]: e for e in _expressions(_dashboard(synthesis))}
    expected = [
        f"SEARCH('{{{namespace}}} MetricName=\"BytesDownloaded\"', 'Sum', 300)",
        f"SEARCH('{{{namespace}}} MetricName=\"WorksSynced\"', 'Sum', 300)",
        f"SEARCH('{{{namespace},cause}} MetricName=\"WorkFailures\"', 'Sum', 300)",
        f"SEARCH('{{{namespace},phase}} MetricName=\"PhaseDuration\"', 'Average', 300)",
        f"SEARCH('{{{namespace}}} MetricName=\"HoursToEarliestRestoreExpiry\"', 'Minimum', 300)",
        f"SEARCH('{{{namespace},reason}} MetricName=\"MessagesHidden\"', 'Sum', 300)",
        f"SEARCH('{{{namespace}}} MetricName=\"RestoresRenewed\"', 'Sum', 300)",
        f"SEARCH('{{{namespace}}} MetricName=\"MetricsDropped\"', 'Sum', 300)",
        f"SEARCH('{{{namespace},region}} MetricName=\"FinisherHeartbeat\"', 'Sum', 300)",
        f"SEARCH('{{{namespace},host}} MetricName=\"FinisherHeartbeat\"', 'Sum', 300)",
    ]
    assert sorted(expressions) == sorted(expected)
    # no explicit region: the search runs in the dashboard's (home) region, where the finisher puts its metrics
    assert {e.get("region", home) for e in expressions.values()} == {home}


def test_oldest_work_widget_shows_the_alarm_threshold(synthesis: Synthesis) -> None:
    body = _dashboard(synthesis)
    annotated = [w for w in body["widgets"] if "age of oldest" in w["properties"].get("title", "")]
    assert len(annotated) == len(synthesis.environment.regions)
    for widget in annotated:
        [annotation] = widget["properties"]["annotations"]["horizontal"]
        assert annotation["value"] == synthesis.environment.oldest_message_alarm_seconds


def _finisher_schemas() -> set[tuple[str, tuple[str, ...]]]:
    """Each metric and the dimension names it carries, as the finisher's own metrics code puts them (every named
    metric of onprem/finisher/metrics.py)."""
    metrics = LogMetrics()
    metrics.bytes_downloaded(1)
    metrics.work_synced()
    metrics.work_failed("transfer")
    metrics.phase_duration("fetch", 1.0)
    metrics.restore_expiry_hours(30.0)
    metrics.restores_renewed(1)
    metrics.messages_hidden("backlog", 2)
    metrics.heartbeat(["us-east-1"], "archive-host")
    metrics.record(Datum(DROPPED_METRIC, 1))
    return {(name, tuple(sorted(dimensions))) for name, dimensions, _ in metrics.points}


def test_finisher_searches_use_the_dimensions_the_finisher_puts(synthesis: Synthesis) -> None:
    namespace = synthesis.environment.monitoring.namespace
    expressions = {e["expression"] for e in _expressions(_dashboard(synthesis))}
    schemas = _finisher_schemas()
    assert {name for name, _ in schemas} == set(UNITS)  # every metric the finisher knows is put above
    for name, dimensions in schemas:
        schema = ",".join((namespace, *dimensions))
        assert any(f"SEARCH('{{{schema}}} MetricName=\"{name}\"'" in e for e in expressions), (name, schema)
    for table in (FINISHER_COUNT_METRICS, FINISHER_BACKLOG_METRICS):
        assert {(n, d) for n, d in table.items()} <= schemas
