"""The CDK app: ``cdk synth -c env=dev|prod``. Reads the environment, builds the Lambda asset, adds stacks."""

from __future__ import annotations

import os
from pathlib import Path

from aws_cdk import App

from config.loader import ENV_VAR, load_environment
from infra.cdk.lambda_asset import REPO_ROOT, build_asset
from infra.cdk.nag import apply_nag_checks, apply_suppressions
from infra.cdk.stacks import EnvironmentStacks, build_stacks

#: synth-only account when neither the config nor the CLI's credentials name one (docs/deploy.md)
PLACEHOLDER_ACCOUNT = "000000000000"
DEFAULT_ASSET_DIR = REPO_ROOT / "build" / "lambda" / "notify_restore"


class MissingEnvironment(ValueError):
    """Neither ``-c env=…`` nor ``$BDRC_ENV`` names an environment."""


def resolve_account(configured: str | None) -> str:
    return configured or os.environ.get("CDK_DEFAULT_ACCOUNT") or PLACEHOLDER_ACCOUNT


def build_app(app: App, env_name: str, *, asset_dir: Path = DEFAULT_ASSET_DIR, account: str | None = None,
              nag: bool = True) -> EnvironmentStacks:
    """Add ``env_name``'s stacks to ``app`` (asset built first, so synth never depends on make order)."""
    environment = load_environment(env_name)
    build_asset(asset_dir)
    stacks = build_stacks(app, environment, account=account or resolve_account(environment.account),
                          asset_dir=asset_dir)
    if nag:
        apply_nag_checks(app)
        apply_suppressions(stacks)
    return stacks


def main() -> None:
    app = App()
    env_name = app.node.try_get_context("env") or os.environ.get(ENV_VAR)
    if not env_name:
        raise MissingEnvironment(f"choose an environment: cdk synth -c env=dev (or set {ENV_VAR})")
    build_app(app, env_name)
    app.synth()


if __name__ == "__main__":
    main()
