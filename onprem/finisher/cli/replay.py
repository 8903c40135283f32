"""``finisher replay-failures``: the notify function's failed events re-driven through it (docs/deploy.md).
Formatting only: reading the two failure formats and replaying is ``work/replay.py``'s. Exit 0 when every event
read was replayed (or, with --dry-run, could be), 1 when one was refused or unreadable, 2 for a bad queue choice."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from onprem.finisher.cli.output import cells, err_console, out_console, say
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.failure_queue import FailureQueue, NotifyInvoker, failure_queue_url
from onprem.finisher.work.replay import Outcome, Replayed, replay_failures
from onprem.finisher.work.settings import Settings


def _queues(settings: Settings, clients: AwsClients, region: str | None, queue_url: str | None) -> list[FailureQueue]:
    """The failure queue of each region chosen; ``--queue-url`` (FAILURE_QUEUE_URL) names one by its URL."""
    environment = settings.environment
    regions = [r.region for r in environment.regions if region is None or r.region == region]
    if not regions:
        say(err_console(), f"no region {region!r} in environment {environment.name}", "red")
        raise typer.Exit(2)
    if queue_url:
        name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        owner = [r for r in regions if environment.failure_queue_name(r) == name]
        if not owner:
            say(err_console(), f"{queue_url} is not the failure queue of a region of {environment.name} "
                               f"(expected one of {', '.join(environment.failure_queue_name(r) for r in regions)})",
                "red")
            raise typer.Exit(2)
        return [FailureQueue(clients.client("sqs", owner[0]), owner[0], queue_url)]
    return [FailureQueue(clients.client("sqs", r), r,
                         failure_queue_url(clients.client("sqs", r), environment.failure_queue_name(r)))
            for r in regions]


def _print(replayed: list[Replayed], dry_run: bool) -> None:
    table = Table("work", "cause", "format", "outcome", "region", "event")
    for item in replayed:
        event = item.failed.event or {}
        outcome = f"{item.outcome}: {item.detail}" if item.detail else str(item.outcome)
        table.add_row(*cells(", ".join(item.failed.work_rids) or "-", item.failed.cause, item.failed.format,
                             outcome, item.region, event.get("id", "-")))
    out_console().print(table)
    done = sum(1 for r in replayed if r.outcome in (Outcome.REPLAYED, Outcome.WOULD_REPLAY))
    say(out_console(), f"{done} event(s) {'would be replayed' if dry_run else 'replayed'}, "
                       f"{len(replayed) - done} left in the failure queue")


def command(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be replayed; replay and delete nothing"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="at most this many failure messages"),
    region: str | None = typer.Option(None, "--region", help="only this region's failure queue"),
    queue_url: str | None = typer.Option(None, "--queue-url", envvar="FAILURE_QUEUE_URL",
                                         help="the failure queue by URL (default: each region's, by name)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Re-drive the notify function's failed restore events (Lambda destination records and EventBridge DLQ
    messages) through the function; each failure message is deleted once Lambda accepted its event."""
    settings = ctx.obj.settings()
    clients = AwsClients(settings.endpoint_url)
    replayed: list[Replayed] = []
    for queue in _queues(settings, clients, region, queue_url):
        left = None if limit is None else limit - len(replayed)
        if left == 0:
            break
        invoker = NotifyInvoker(clients.client("lambda", queue.region),
                                settings.environment.notify_function_name(queue.region))
        replayed += replay_failures(queue, invoker, limit=left, dry_run=dry_run)
    if as_json:
        print(json.dumps([item.as_json() for item in replayed]))
    else:
        _print(replayed, dry_run)
    if any(item.outcome in (Outcome.REFUSED, Outcome.UNREADABLE) for item in replayed):
        raise typer.Exit(1)
