"""Synthesize each environment ONCE per test session (with cdk-nag), and hand out templates and reports."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

from aws_cdk import App
from aws_cdk.assertions import Template

from config.loader import load_environment
from config.model import EnvironmentConfig, RegionConfig
from infra.cdk.app import PLACEHOLDER_ACCOUNT, build_app

ENVIRONMENTS = ("dev", "prod")


@dataclass(frozen=True)
class Synthesis:
    """One environment's cloud assembly: templates by stack name, the validation report, the config."""

    environment: EnvironmentConfig
    outdir: Path
    stack_names: dict[str, str]  # "regional:<region>" / "monitoring" / "access" → stack name

    def template(self, key: str) -> dict[str, Any]:
        return json.loads((self.outdir / f"{self.stack_names[key]}.template.json").read_text(encoding="utf-8"))

    def assertions(self, key: str) -> Template:
        return Template.from_json(self.template(key))

    def template_path(self, key: str) -> Path:
        return self.outdir / f"{self.stack_names[key]}.template.json"

    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text(encoding="utf-8"))

    def regional_keys(self) -> list[str]:
        return [k for k in self.stack_names if k.startswith("regional:")]

    def regions(self) -> list[tuple[str, RegionConfig]]:
        """(stack key, region config) of every regional stack."""
        return [(f"regional:{r.region}", r) for r in self.environment.regions]


def _synthesize(env_name: str, root: Path) -> Synthesis:
    outdir = root / "cdk.out"
    app = App(outdir=str(outdir), context={"@aws-cdk/core:validationReportPrettyPrint": False})
    stacks = build_app(app, env_name, asset_dir=root / "asset" / "notify_restore", account=PLACEHOLDER_ACCOUNT)
    app.synth()
    names = {f"regional:{region}": stack.stack_name for region, stack in stacks.regional.items()}
    names["monitoring"] = stacks.monitoring.stack_name
    names["access"] = stacks.access.stack_name
    return Synthesis(environment=load_environment(env_name), outdir=outdir, stack_names=names)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesis]:
    """Both environments, synthesized once for the whole session (a failed cdk-nag check fails here)."""
    return {name: _synthesize(name, tmp_path_factory.mktemp(f"synth-{name}")) for name in ENVIRONMENTS}


@pytest.fixture(params=ENVIRONMENTS)
def synthesis(request: pytest.FixtureRequest, synthesized: dict[str, Synthesis]) -> Synthesis:
    return synthesized[request.param]


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def only(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    found = resources_of(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def queue_named(template: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    matches = [(k, v) for k, v in resources_of(template, "AWS::SQS::Queue").items()
               if v["Properties"]["QueueName"] == name]
    assert len(matches) == 1, name
    return matches[0]
