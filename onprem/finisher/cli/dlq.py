"""``finisher dlq list | show | redrive``: what is in the dead-letter queues, and moving a chosen few back.
Formatting only: reading and moving are ``work/dlq.py``'s."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import typer
from rich.table import Table

from onprem.finisher.cli.output import cells, err_console, out_console, say
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.dlq import DeadFilter, DeadMessage, list_dead, redrive_dead

dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter queues: list, show one, redrive by cause, work "
                                                 "or age.")
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _older_than(value: str | None) -> timedelta | None:
    """``--older-than``: ``90s``, ``30m``, ``12h``, ``2d``."""
    if value is None:
        return None
    match = _AGE.match(value.strip())
    if not match:
        raise typer.BadParameter(f"{value!r} is not an age: a number and s, m, h or d (30m, 12h, 2d)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _queues(ctx: typer.Context, region: str | None) -> list[WorkQueue]:
    settings = ctx.obj.settings()
    clients = AwsClients(settings.endpoint_url)
    queues = [WorkQueue(clients.client("sqs", r.region), r.region, r.queue_name, r.dlq_name)
              for r in settings.environment.regions if region is None or r.region == region]
    if not queues:
        say(err_console(), f"no region {region!r} in environment {settings.environment.name}", "red")
        raise typer.Exit(2)
    return queues


def _age(dead: DeadMessage, now: datetime) -> str:
    age = dead.age(now)
    if age is None:
        return "-"
    days, rest = divmod(int(age.total_seconds()), 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    return f"{days}d{hours}h" if days else f"{hours}h{minutes:02d}m"


def _table(found: list[DeadMessage], now: datetime) -> Table:
    table = Table("work", "cause", "message", "receives", "age", "region")
    for dead in found:
        table.add_row(*cells(dead.work_rid or "-", dead.cause or "-", dead.failure_message or "-",
                             dead.receive_count, _age(dead, now), dead.region))
    return table


RegionOption = typer.Option(None, "--region", help="only this region")
JsonOption = typer.Option(False, "--json", help="print JSON")


@dlq_app.command("list")
def list_command(ctx: typer.Context, region: str | None = RegionOption, as_json: bool = JsonOption) -> None:
    """Every DLQ message: work, cause, message, receive count, age (oldest failure first)."""
    found, now = list_dead(_queues(ctx, region)), datetime.now(UTC)
    if as_json:
        print(json.dumps([dead.as_json(now) for dead in found]))
        return
    out_console().print(_table(found, now))
    say(out_console(), f"{len(found)} message(s) in the DLQ")


@dlq_app.command("show")
def show_command(ctx: typer.Context, which: str = typer.Argument(..., help="a work RID or a message id"),
                 region: str | None = RegionOption, as_json: bool = JsonOption) -> None:
    """One DLQ message in full: its failure and its body. Exit 1 when no message is the work or id given."""
    now = datetime.now(UTC)
    found = [dead for dead in list_dead(_queues(ctx, region)) if which in (dead.work_rid, dead.message_id)]
    if not found:
        say(err_console(), f"{which}: no such work or message in the DLQ", "red")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps([{**dead.as_json(now), "body": dead.body} for dead in found]))
        return
    for dead in found:
        for label, value in dead.as_json(now).items():
            say(out_console(), f"{label}: {'-' if value is None else value}")
        say(out_console(), f"body: {dead.body}")


@dlq_app.command("redrive")
def redrive_command(
    ctx: typer.Context,
    causes: list[str] = typer.Option(None, "--cause", help="only messages with this failure cause (repeatable)"),
    rids: list[str] = typer.Option(None, "--rid", help="only this work (repeatable)"),
    older_than: str | None = typer.Option(None, "--older-than", help="only failures at least this old: 30m, 12h, 2d"),
    region: str | None = RegionOption,
    as_json: bool = JsonOption,
) -> None:
    """Move the chosen DLQ messages back to their work queue (bodies kept, failure attributes dropped); every
    condition given must hold, none given: all. The others stay in the DLQ."""
    chosen = DeadFilter(frozenset(causes or ()), frozenset(rids or ()), _older_than(older_than))
    moved, now = redrive_dead(_queues(ctx, region), chosen), datetime.now(UTC)
    if as_json:
        print(json.dumps([dead.as_json(now) for dead in moved]))
        return
    for dead in moved:
        say(out_console(), f"{dead.work_rid or dead.message_id}: moved back to the {dead.region} work queue "
                           f"({dead.cause or 'no cause'})")
    say(out_console(), f"{len(moved)} message(s) moved")
