"""The stacks of one environment: a regional stack per region with staging buckets, the monitoring stack
(dashboard) and the finisher access stack (IAM), both in the home region ``monitoring.dashboard_region``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, Stack

from config.model import EnvironmentConfig
from infra.cdk.stacks.access import FinisherAccessStack
from infra.cdk.stacks.monitoring import MonitoringStack
from infra.cdk.stacks.regional import RegionalStack


@dataclass(frozen=True)
class EnvironmentStacks:
    regional: dict[str, RegionalStack]
    monitoring: MonitoringStack
    access: FinisherAccessStack

    def all(self) -> list[Stack]:
        return [*self.regional.values(), self.monitoring, self.access]


def build_stacks(app: App, environment: EnvironmentConfig, *, account: str, asset_dir: Path) -> EnvironmentStacks:
    """Instantiate every stack of ``environment`` in ``app``; stack names start with its resource prefix."""
    prefix = environment.resource_prefix
    regional = {
        r.region: RegionalStack(app, f"{prefix}-{r.region}", environment=environment, region=r, account=account,
                                asset_dir=asset_dir)
        for r in environment.regions
    }
    monitoring = MonitoringStack(app, f"{prefix}-monitoring", environment=environment, account=account)
    access = FinisherAccessStack(app, f"{prefix}-finisher-access", environment=environment, account=account)
    return EnvironmentStacks(regional=regional, monitoring=monitoring, access=access)
