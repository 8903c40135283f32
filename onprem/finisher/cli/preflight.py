"""``finisher preflight``: read-only checks of the configured account before ``cdk deploy`` (docs/deploy.md).
Formatting only: the checks are ``work/preflight.py``'s. Exit 0 when nothing would fail, 1 when something would."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from onprem.finisher.cli.output import cells, out_console, say
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.preflight import PreflightReport, Verdict, run_preflight

_STYLE = {Verdict.OK: "green", Verdict.NOTE: "yellow", Verdict.PROBLEM: "red"}


def _print(report: PreflightReport) -> None:
    console = out_console()
    say(console, f"environment {report.environment}, caller {report.caller_arn or '-'}")
    table = Table("subject", "check", "verdict", "seen")
    for finding in report.findings:
        row = cells(finding.subject, finding.check, finding.verdict, finding.message)
        row[2].stylize(_STYLE[finding.verdict])
        table.add_row(*row)
    console.print(table)
    say(console, "cdk deploy will change on the buckets:")
    for change in report.changes or ["nothing (no bucket could be read)"]:
        say(console, f"  {change}")
    if report.ok:
        say(console, "nothing would fail", "green")
        return
    say(console, f"{len(report.problems)} problem(s) would fail the deploy or the pipeline:", "red")
    for problem in report.problems:
        say(console, f"  {problem.subject}: {problem.message}", "red")


def command(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Check, read-only, that `cdk deploy` of this environment will work: staging buckets in their configured
    regions, their notifications and destinations, default encryption, the caller, the queues and leftovers."""
    settings = ctx.obj.settings()
    report = run_preflight(settings.environment, AwsClients(settings.endpoint_url))
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(1)
