"""``finisher request-restore`` estimates first: per work and in total, then asks (or ``--yes``), refuses above the
cap, and takes ``--tier`` in any case. Against moto (real S3 calls) and a real ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from onprem.finisher.cli.app import app
from onprem.finisher.work.clients import AwsClients
from tests.integration.test_cli import RID, cli, ledger, upload_archived
from tests.integration.worker_support import BUCKET, REGION, aws

__all__ = ["aws", "cli"]
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"


def restore_header(aws: AwsClients) -> str | None:
    return aws.s3(REGION).head_object(Bucket=BUCKET, Key=KEY).get("Restore")


def test_the_estimate_per_work_and_in_total_is_printed_before_the_question(
        tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    upload_archived(aws, tmp_path)
    result = cli.invoke(app, ["request-restore", RID, "W9NOPE99"], input="n\n")
    assert result.exit_code == 1, result.output
    table_at, total_at = result.stdout.index(RID), result.stdout.index("estimate: 1 object(s)")
    assert table_at < total_at and "48 h" in result.stdout and "Bulk" in result.stdout
    assert "request 1 restore(s) for about $" in result.stderr and "declined: nothing requested" in result.stderr
    assert restore_header(aws) is None and ledger(tmp_path).restore_requests() == []


def test_a_yes_at_the_prompt_requests_and_records(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    upload_archived(aws, tmp_path)
    result = cli.invoke(app, ["request-restore", RID], input="y\n")
    assert result.exit_code == 0, result.output
    assert f"{RID}: requested" in result.stdout and restore_header(aws) is not None
    [request] = ledger(tmp_path).restore_requests()
    assert request["estimated_cost_usd"] > 0


def test_without_a_terminal_nor_yes_nothing_is_requested(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    upload_archived(aws, tmp_path)
    result = cli.invoke(app, ["request-restore", RID, "--json"])
    assert result.exit_code == 1
    assert restore_header(aws) is None and ledger(tmp_path).restore_requests() == []


def test_above_max_cost_nothing_is_requested_even_with_yes(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    upload_archived(aws, tmp_path)
    result = cli.invoke(app, ["request-restore", RID, "--yes", "--max-cost", "0", "--json"])
    assert result.exit_code == 2, result.output
    assert "is above the cap of $0.0000; nothing requested" in result.stderr
    report = json.loads(result.stdout)
    assert report["objects"][0]["outcome"] == "to_request" and report["objects"][0]["cost_usd"] > 0
    assert restore_header(aws) is None


def test_the_configured_default_cap_refuses(tmp_path: Path, aws: AwsClients, cli: CliRunner,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    upload_archived(aws, tmp_path)
    monkeypatch.setenv("FINISHER_RESTORE_MAX_COST", "0")
    assert cli.invoke(app, ["request-restore", RID, "--yes"]).exit_code == 2
    assert restore_header(aws) is None
    allowed = cli.invoke(app, ["request-restore", RID, "--yes", "--max-cost", "1"])
    assert allowed.exit_code == 0, allowed.output
    assert restore_header(aws) is not None


@pytest.mark.parametrize(("given", "tier"), [("bulk", "Bulk"), ("STANDARD", "Standard"), ("Bulk", "Bulk")])
def test_tier_is_taken_in_any_case(tmp_path: Path, aws: AwsClients, cli: CliRunner, given: str, tier: str) -> None:
    upload_archived(aws, tmp_path)
    result = cli.invoke(app, ["request-restore", RID, "--tier", given, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tier"] == tier


def test_an_unknown_tier_is_refused_naming_the_accepted_ones(cli: CliRunner) -> None:
    result = cli.invoke(app, ["request-restore", RID, "--tier", "Expedited"])
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())  # typer's error box wraps the line
    assert "'Expedited' is not a Deep Archive restore tier: accepted Bulk | Standard (any case)" in said
    assert isinstance(result.exception, SystemExit)  # a usage error, no KeyError
