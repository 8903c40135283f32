"""The cross-region CloudWatch dashboard: every metric names its region, so one dashboard shows them all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

PERIOD = Duration.minutes(5)
SERVICE_DIMENSION = {"service": "notify_restore"}
#: EMF metrics of the notify_restore function (Powertools Metrics, dimension service=notify_restore)
NOTIFY_METRICS = ("RestoresRouted", "RestoresIgnored", "RestoresUnroutable", "DuplicatesSuppressed")
#: counts the finisher puts in the same namespace (onprem/finisher/metrics.py) and the dimensions each carries:
#: a SEARCH schema ``{namespace,dim}`` matches only metrics with exactly those dimensions
FINISHER_COUNT_METRICS: dict[str, tuple[str, ...]] = {"WorksSynced": (), "WorkFailures": ("cause",)}
#: the backlog's hides (``reason``: backlog | restore_wait), the renewals before expiry, the metrics the finisher lost
FINISHER_BACKLOG_METRICS: dict[str, tuple[str, ...]] = {
    "MessagesHidden": ("reason",), "RestoresRenewed": (), "MetricsDropped": ()}
#: FinisherHeartbeat is put twice per round: per polled region (the alarm's dimension) and per host
HEARTBEAT_METRIC = "FinisherHeartbeat"
HEARTBEAT_SCHEMAS: tuple[tuple[str, ...], ...] = (("region",), ("host",))
WIDGET_WIDTH = 8
WIDGET_HEIGHT = 6


@dataclass(frozen=True)
class RegionResources:
    """Names of one region's resources, as plain strings from the environment config (no cross-stack refs)."""

    region: str
    queue_name: str
    dlq_name: str
    failure_queue_name: str
    function_name: str


def _sqs(region: RegionResources, queue_name: str, metric_name: str, label: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/SQS", metric_name=metric_name, dimensions_map={"QueueName": queue_name},
        statistic="Maximum", period=PERIOD, region=region.region, label=label,
    )


def _lambda(region: RegionResources, metric_name: str, statistic: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/Lambda", metric_name=metric_name, dimensions_map={"FunctionName": region.function_name},
        statistic=statistic, period=PERIOD, region=region.region, label=f"{metric_name} ({statistic})",
    )


def region_widgets(region: RegionResources, namespace: str, oldest_alarm_seconds: int) -> list[cloudwatch.IWidget]:
    """One row of widgets for one region: queues, age, function, notify outcomes."""
    r = region.region
    queues = cloudwatch.GraphWidget(
        title=f"{r}: queued works, DLQ, failures", width=WIDGET_WIDTH, height=WIDGET_HEIGHT,
        left=[
            _sqs(region, region.queue_name, "ApproximateNumberOfMessagesVisible", "visible works"),
            _sqs(region, region.queue_name, "ApproximateNumberOfMessagesNotVisible", "works in progress"),
            _sqs(region, region.dlq_name, "ApproximateNumberOfMessagesVisible", "DLQ depth"),
            _sqs(region, region.failure_queue_name, "ApproximateNumberOfMessagesVisible", "failure queue depth"),
        ],
    )
    age = cloudwatch.GraphWidget(
        title=f"{r}: age of oldest queued work (s)", width=WIDGET_WIDTH, height=WIDGET_HEIGHT,
        left=[_sqs(region, region.queue_name, "ApproximateAgeOfOldestMessage", "oldest work age")],
        left_annotations=[cloudwatch.HorizontalAnnotation(value=oldest_alarm_seconds, label="alarm")],
    )
    function = cloudwatch.GraphWidget(
        title=f"{r}: notify_restore function", width=WIDGET_WIDTH, height=WIDGET_HEIGHT,
        left=[_lambda(region, name, "Sum") for name in ("Invocations", "Errors", "Throttles")],
        right=[_lambda(region, "Duration", "Maximum")],
    )
    outcomes = cloudwatch.GraphWidget(
        title=f"{r}: restore events routed / ignored / unroutable / duplicates", width=WIDGET_WIDTH * 3,
        height=WIDGET_HEIGHT,
        left=[
            cloudwatch.Metric(namespace=namespace, metric_name=name, dimensions_map=SERVICE_DIMENSION,
                              statistic="Sum", period=PERIOD, region=r, label=name)
            for name in NOTIFY_METRICS
        ],
    )
    return [queues, age, function, outcomes]


def search_expression(schema: str, metric_name: str, statistic: str) -> str:
    """``SEARCH('{schema} MetricName="name"', 'stat', 300)``: the metrics of exactly that dimension schema."""
    return f"SEARCH('{{{schema}}} MetricName=\"{metric_name}\"', '{statistic}', 300)"


def finisher_widgets(namespace: str, metrics_region: str) -> list[cloudwatch.IWidget]:
    """The finisher's metrics, each found by SEARCH in the schema of the dimensions the finisher puts."""
    def search(metric_name: str, statistic: str, label: str,
               dimensions: tuple[str, ...] = ()) -> cloudwatch.MathExpression:
        schema = ",".join((namespace, *dimensions))
        return cloudwatch.MathExpression(
            expression=search_expression(schema, metric_name, statistic),
            label=label, period=PERIOD, search_region=metrics_region,
        )
    sums = cloudwatch.GraphWidget(
        title="finisher: works synced, failures by cause", width=WIDGET_WIDTH, height=WIDGET_HEIGHT,
        left=[search(name, "Sum", name, dimensions) for name, dimensions in FINISHER_COUNT_METRICS.items()],
    )
    downloaded = cloudwatch.GraphWidget(
        title="finisher: bytes downloaded", width=WIDGET_WIDTH, height=WIDGET_HEIGHT,
        left=[search("BytesDownloaded", "Sum", "BytesDownloaded")],
    )
    phases = cloudwatch.GraphWidget(
        title="finisher: phase duration by phase (s)", width=WIDGET_WIDTH, height=WIDGET_HEIGHT,
        left=[search("PhaseDuration", "Average", "PhaseDuration", ("phase",))],
    )
    expiry = cloudwatch.GraphWidget(
        title="finisher: hours to the earliest unsynced restore expiry", width=WIDGET_WIDTH, height=WIDGET_HEIGHT,
        left=[search("HoursToEarliestRestoreExpiry", "Minimum", "HoursToEarliestRestoreExpiry")],
    )
    backlog = cloudwatch.GraphWidget(
        title="finisher: messages hidden by reason, restores renewed, metrics dropped", width=WIDGET_WIDTH,
        height=WIDGET_HEIGHT,
        left=[search(name, "Sum", name, dimensions) for name, dimensions in FINISHER_BACKLOG_METRICS.items()],
    )
    heartbeat = cloudwatch.GraphWidget(
        title="finisher: heartbeats per polled region and per host (0: not running)", width=WIDGET_WIDTH,
        height=WIDGET_HEIGHT,
        left=[search(HEARTBEAT_METRIC, "Sum", f"heartbeat by {dimensions[0]}", dimensions)
              for dimensions in HEARTBEAT_SCHEMAS],
    )
    return [sums, downloaded, phases, expiry, backlog, heartbeat]


class RestoreDashboard(Construct):
    """One dashboard for the whole environment, a row per region plus the finisher's row."""

    def __init__(self, scope: Construct, construct_id: str, *, dashboard_name: str,
                 regions: Sequence[RegionResources], namespace: str, finisher_metrics_region: str,
                 oldest_alarm_seconds: int) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=dashboard_name, default_interval=Duration.hours(24),
        )
        self.dashboard.add_widgets(cloudwatch.TextWidget(
            markdown=f"# {dashboard_name}\nAlarms live in each region (CloudWatch alarms cannot watch another "
                     "region's metrics); this dashboard shows every region.", width=24, height=2,
        ))
        for region in regions:
            self.dashboard.add_widgets(*region_widgets(region, namespace, oldest_alarm_seconds))
        self.dashboard.add_widgets(*finisher_widgets(namespace, finisher_metrics_region))
