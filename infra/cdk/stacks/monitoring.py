"""The environment's dashboard, in the home region, showing every region (alarms stay regional)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from config.model import EnvironmentConfig
from infra.cdk.constructs.dashboard import RegionResources, RestoreDashboard


def region_resources(environment: EnvironmentConfig) -> list[RegionResources]:
    return [
        RegionResources(
            region=r.region, queue_name=r.queue_name, dlq_name=r.dlq_name,
            failure_queue_name=environment.failure_queue_name(r.region),
            function_name=environment.notify_function_name(r.region),
        )
        for r in environment.regions
    ]


class MonitoringStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, environment: EnvironmentConfig, account: str) -> None:
        home = environment.monitoring.dashboard_region
        super().__init__(
            scope, construct_id, env=Environment(account=account, region=home),
            description=f"bdrc-restore {environment.name}: cross-region dashboard",
        )
        dashboard_name = f"{environment.resource_prefix}-restore"
        self.dashboard = RestoreDashboard(
            self, "Dashboard", dashboard_name=dashboard_name, regions=region_resources(environment),
            namespace=environment.monitoring.namespace, finisher_metrics_region=home,
            oldest_alarm_seconds=environment.oldest_message_alarm_seconds,
        )
        CfnOutput(
            self, "DashboardUrl",
            value=f"https://{home}.console.aws.amazon.com/cloudwatch/home?region={home}#dashboards:name={dashboard_name}",
        )
