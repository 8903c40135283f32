"""``finisher request-restore``: estimate first (per work and in total), then ask (or ``--yes``), refuse above the
cap, and only then request. Formatting only: the plan and the requests are ``work/operator.py``'s."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from onprem.finisher.cli.output import cells, err_console, ledger_errors_in_one_line, out_console, say
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.operator import RestorePlan, plan_restores, submit_restores
from onprem.finisher.work.settings import restore_tier

#: the request was declined at the prompt (nothing requested)
EXIT_DECLINED = 1
#: the estimate is above the cap (nothing requested)
EXIT_OVER_CAP = 2


def _tier(value: str | None) -> str | None:
    """``--tier`` in any case (``bulk`` → ``Bulk``); refused with the accepted tiers named."""
    if value is None:
        return None
    try:
        return restore_tier(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


def _targets(targets: list[str] | None, from_file: Path | None) -> list[str]:
    wanted = list(targets or [])
    if from_file:
        lines = from_file.read_text(encoding="utf-8").splitlines()
        wanted += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return wanted


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def _print_plan(plan: RestorePlan, *, dry_run: bool) -> None:
    """One row per target (the bucket and key are in ``--json``), then the total."""
    console = out_console()
    table = Table("work", "size", "state", "tier", "cost USD", "ready in", "outcome")
    for row in plan.rows:
        cost = f"{row['cost_usd']:.4f}" if "cost_usd" in row else "-"
        eta = f"{row['eta_hours']:g} h" if "eta_hours" in row else "-"
        table.add_row(*cells(row["work_rid"], _size(row.get("size")), row.get("state") or "-",
                             row.get("tier") or "-", cost, eta, row["outcome"]))
    console.print(table)
    say(console, plan.report(dry_run=dry_run)["estimate_text"])


def request_restore(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(None, help="work RIDs or s3://bucket/key"),
    from_file: Path | None = typer.Option(None, "--from-file", help="one RID or s3:// URL per line"),
    collection: str | None = typer.Option(None, "--collection", help="look only in this collection's buckets"),
    tier: str | None = typer.Option(None, "--tier", callback=_tier,
                                    help="Bulk | Standard, any case (default: the environment's)"),
    days: int | None = typer.Option(None, "--days", min=1, max=30, help="days the restored copy stays"),
    max_cost: float | None = typer.Option(None, "--max-cost", min=0,
                                          help="refuse when the total estimate is above this many USD "
                                               "(default: FINISHER_RESTORE_MAX_COST, 100)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="request without asking"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the cost and ETA, request nothing"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Request Deep Archive restores: the estimate (each work and the total) first, then the question (or --yes);
    above --max-cost nothing is requested."""
    settings = ctx.obj.settings(restore_tier=tier, restore_days=days)
    wanted = _targets(targets, from_file)
    if not wanted:
        say(err_console(), "nothing to restore: give RIDs, s3:// URLs or --from-file", "red")
        raise typer.Exit(2)
    clients = AwsClients(settings.endpoint_url)
    plan = plan_restores(settings, clients, wanted, collection=collection)
    if dry_run:
        for _, row in plan.to_request:
            row["outcome"] = "dry_run"
    if not as_json:
        _print_plan(plan, dry_run=dry_run)
    cap = settings.restore.max_cost_usd if max_cost is None else max_cost
    refusal = None if dry_run else plan.over(cap)
    if refusal:
        say(err_console(), refusal, "red")
        _finish(plan, as_json, dry_run, EXIT_OVER_CAP)
    wanted_now = bool(plan.to_request) and not dry_run
    if wanted_now and not yes and not typer.confirm(
            f"request {plan.total.objects} restore(s) for about ${plan.total.cost_usd:.4f}?", err=True):
        say(err_console(), "declined: nothing requested", "red")
        _finish(plan, as_json, dry_run, EXIT_DECLINED)
    if wanted_now:
        submit_restores(settings, clients, ctx.obj.ledger(settings), plan)
        for location, row in plan.to_request:
            if not as_json:
                say(out_console(), f"{location.work_rid}: {row['outcome']}")
    _finish(plan, as_json, dry_run, 1 if any(r["outcome"] == "not_found" for r in plan.rows) else 0)


def _finish(plan: RestorePlan, as_json: bool, dry_run: bool, code: int) -> None:
    if as_json:
        print(json.dumps(plan.report(dry_run=dry_run), default=str))
    raise typer.Exit(code)


#: registered on the app by ``app.py``: the command with its one-line ledger errors
command = ledger_errors_in_one_line(request_restore)
