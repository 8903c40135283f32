"""The app entry point: the environment comes from ``-c env=…`` (or $BDRC_ENV), the account from the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cdk.app import PLACEHOLDER_ACCOUNT, MissingEnvironment, main, resolve_account
from tests.infra.conftest import Synthesis

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cdk_json_runs_the_app_module() -> None:
    cdk = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))
    assert cdk["app"].endswith("python -m infra.cdk.app")


def test_missing_environment_is_a_named_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BDRC_ENV", raising=False)
    monkeypatch.delenv("CDK_CONTEXT_JSON", raising=False)
    with pytest.raises(MissingEnvironment, match="-c env=dev"):
        main()


def test_account_comes_from_config_then_cli_then_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "111122223333")
    assert resolve_account("444455556666") == "444455556666"
    assert resolve_account(None) == "111122223333"
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT")
    assert resolve_account(None) == PLACEHOLDER_ACCOUNT


def test_every_stack_has_a_concrete_account_and_region(synthesis: Synthesis) -> None:
    manifest = json.loads((synthesis.outdir / "manifest.json").read_text(encoding="utf-8"))
    environments = {name: artifact["environment"] for name, artifact in manifest["artifacts"].items()
                    if artifact["type"] == "aws:cloudformation:stack"}
    home = synthesis.environment.monitoring.dashboard_region
    expected = {synthesis.stack_names[f"regional:{r.region}"]: f"aws://{PLACEHOLDER_ACCOUNT}/{r.region}"
                for r in synthesis.environment.regions}
    expected[synthesis.stack_names["monitoring"]] = f"aws://{PLACEHOLDER_ACCOUNT}/{home}"
    expected[synthesis.stack_names["access"]] = f"aws://{PLACEHOLDER_ACCOUNT}/{home}"
    assert environments == expected


def test_asset_holds_the_handler_package_and_its_leaves(synthesis: Synthesis) -> None:
    [asset] = [p for p in synthesis.outdir.iterdir() if p.name.startswith("asset.")
               and not (p / "python").is_dir()]  # the other asset is the Powertools layer (test_powertools_layer)
    assert (asset / "lambdas" / "notify_restore" / "__init__.py").is_file()
    assert (asset / "config" / "routing.py").is_file()
    assert not (asset / "config" / "loader.py").exists()

