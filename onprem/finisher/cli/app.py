"""``finisher``: the operator's commands. Formatting only; the work is done by the worker, ledger and restore.

The commands of a group live in their own module (``restore.py``: ``request-restore``; ``watch.py``; ``dlq.py``),
registered here in one line; every message a person reads goes through ``say`` or ``cells`` (``output.py``: plain
text, never parsed as markup):
a file or RID containing ``[/draft]`` or ``[b]`` is printed as it is. Exit codes: 0 done, 1 some work failed or
was not found, 2 bad settings or arguments, 3 the ledger cannot be used (``LedgerUnavailable``, one line), 4 ``run
--drain`` could not read a queue (refused or unreachable: its messages were not looked at).
The demo is not one of them: it is the development harness's (``python -m harness``, ``make demo``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from config.loader import EnvironmentConfigError
from contract.keys import is_rid
from onprem.finisher.cli.dlq import dlq_app
from onprem.finisher.cli.output import (
    EXIT_QUEUE_UNREACHABLE,
    cells,
    err_console,
    ledger_errors_in_one_line,
    out_console,
    say,
)
from onprem.finisher.cli.preflight import command as preflight
from onprem.finisher.cli.replay import command as replay_failures
from onprem.finisher.cli.restore import command as request_restore
from onprem.finisher.cli.top import command as live_top
from onprem.finisher.cli.watch import command as watch_folder
from onprem.finisher.errors import FinisherError, FolderBusy, LedgerUnavailable
from onprem.finisher.ledger.migrate import upgrade as upgrade_ledger
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.logs import configure_logging
from onprem.finisher.progress import recording
from onprem.finisher.sync.group import kill_running_groups
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.feeder import feeder_for
from onprem.finisher.work.ingest import ingest_zip
from onprem.finisher.work.live_view import live_dir
from onprem.finisher.work.operator import expiring_works, requeue_work, status_document
from onprem.finisher.work.runtime import build_worker, default_progress, open_ledger, work_queues
from onprem.finisher.work.settings import Settings, load_settings
from onprem.finisher.work.stages import Stages
from onprem.finisher.work.sweep import sweep_orphans
from onprem.finisher.work.wiring import real_stages

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Bring restored BDRC works into the archive.")
logger = logging.getLogger(__name__)


#: what builds the stages of ``run`` and ``ingest``: the real ones, or a test's given to ``main``
StagesFor = Callable[[Settings, Callable[[str], Any]], Stages]


@dataclass
class CliState:
    env_name: str | None = None
    settings_file: Path | None = None
    log_format: str | None = None
    stages_for: StagesFor = real_stages

    def settings(self, **overrides: Any) -> Settings:
        try:
            settings = load_settings(env_name=self.env_name, settings_file=self.settings_file,
                                     log_format=self.log_format, **overrides)
        except (EnvironmentConfigError, ValueError, OSError) as err:
            say(err_console(), f"cannot load the settings: {err}", "red")
            raise typer.Exit(2) from err
        configure_logging(settings.log_format, settings.log_level)
        return settings

    def ledger(self, settings: Settings) -> Ledger:
        """The ledger of ``settings`` (for the command modules, which do not import the worker's wiring)."""
        return open_ledger(settings)


def print_version(wanted: bool) -> None:
    """``--version``: the installed distribution's version, then exit (checked first, before any settings)."""
    if wanted:
        from importlib.metadata import version

        say(out_console(), f"finisher {version('bdrc-restore')}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    _version: bool = typer.Option(False, "--version", is_eager=True, callback=print_version,
                                  help="print the version and exit"),
    env: str | None = typer.Option(None, "--env", help="environment (config/<env>.yaml); default $BDRC_ENV or dev"),
    settings_file: Path | None = typer.Option(None, "--settings-file", help="finisher settings YAML"),
    log_format: str | None = typer.Option(None, "--log-format", help="auto | json | text"),
) -> None:
    state = ctx.ensure_object(CliState)  # main() may have made it, with the stages to use
    state.env_name, state.settings_file, state.log_format = env, settings_file, log_format


@app.command()
@ledger_errors_in_one_line
def run(
    ctx: typer.Context,
    drain: bool = typer.Option(False, "--drain", help="exit once every queue is empty and nothing is in flight"),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="work slots"),
    wait_seconds: int | None = typer.Option(None, "--wait-seconds", min=0, max=20, help="long-poll wait"),
    watch_dir: Path | None = typer.Option(None, "--watch", metavar="DIR", file_okay=False,
                                          help="also take the bag zips dropped in DIR, as `finisher watch DIR`"),
    stable_seconds: float = typer.Option(30.0, "--stable-seconds", min=0, help="with --watch: as for watch"),
) -> None:
    """Run the worker: long-poll the queues, fetch → de-bag → sync each work, delete its message (with --watch,
    a feeder of DIR beside the slots; --drain then also waits until DIR has nothing left to take)."""
    settings = ctx.obj.settings(concurrency=concurrency, wait_time_seconds=wait_seconds)
    clients, ledger = AwsClients(settings.endpoint_url), open_ledger(settings)
    stages = ctx.obj.stages_for(settings, clients.s3)
    worker = build_worker(settings, stages, clients=clients, ledger=ledger,
                          progress_for=recording(default_progress, live_dir(settings.state_dir)))
    for staging_root in dict.fromkeys([settings.staging_dir, settings.works_staging_dir]):
        sweep_orphans(staging_root)  # temp files no download or de-bag can resume from
    feeder = feeder_for(settings, stages, ledger, watch_dir, stable_seconds=stable_seconds, drain=drain) \
        if watch_dir else None
    try:
        if feeder is not None:
            feeder.start()
    except FolderBusy as err:
        say(err_console(), str(err), "red")
        raise typer.Exit(2) from err

    def on_signal(signum: int, _frame: Any) -> None:
        if worker.stopping:
            logger.warning("second signal %d: exiting now, %d sync or hook process group(s) killed; unfinished "
                           "messages reappear after their visibility timeout and staged partials resume", signum,
                           kill_running_groups())
            logging.shutdown()
            os._exit(1)
        worker.request_stop()
        if feeder is not None:
            feeder.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = worker.run(drain=drain)
        if feeder is not None:  # with --drain, until the folder has nothing left too
            feeder.finish(settings.worker.grace_period)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    logger.info("finisher stopped: %s", json.dumps(summary.as_dict()), extra={"summary": summary.as_dict()})
    if drain and summary.queue_errors:  # refused receives are not empty queues: the drain did not happen
        for queue_name, error in summary.queue_errors.items():
            logger.error("%s: not drained: %s", queue_name, error)
        raise typer.Exit(EXIT_QUEUE_UNREACHABLE)
    if summary.unfinished:
        kill_running_groups()  # never a child left behind: the restart's sync recognises a copy in place
        logging.shutdown()
        os._exit(0)  # slot threads that did not reach a checkpoint: their messages come back


@app.command()
@ledger_errors_in_one_line
def status(
    ctx: typer.Context,
    rids: list[str] = typer.Argument(None, help="only these works"),
    phase: str | None = typer.Option(None, "--phase", help="only works in this phase"),
    expiring: bool = typer.Option(False, "--expiring", help="restored copies at risk of expiring unprocessed"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Works and their phases (from the ledger), with restores requested but not yet received."""
    settings = ctx.obj.settings()
    ledger = open_ledger(settings)
    document = (expiring_works(settings, ledger) if expiring
                else status_document(ledger, list(rids or []), phase))
    if as_json:
        print(json.dumps(document, default=str))
        return
    table = Table("work", "phase", "attempts", "last cause", "restore expiry", "updated", title="works")
    for row in document["works"]:
        table.add_row(*cells(row["work_rid"], row["phase"], row["attempts"], row.get("last_cause"),
                             row.get("restore_expiry"), row.get("updated_at")))
    console = out_console()
    console.print(table)
    if document.get("pending_restores"):
        pending = Table("work", "bucket", "tier", "status", "requested", "ready by", title="restores requested")
        for row in document["pending_restores"]:
            pending.add_row(*cells(row["work_rid"], row["bucket"], row["tier"], row["status"], row["requested_at"],
                                   row.get("eta_at")))
        console.print(pending)


@app.command()
@ledger_errors_in_one_line
def retry(ctx: typer.Context, rid: str = typer.Argument(..., help="the work RID")) -> None:
    """Re-queue a work from the ledger: its stored message body is sent to its region's queue again."""
    settings = ctx.obj.settings()
    try:
        message_id = requeue_work(settings, AwsClients(settings.endpoint_url), open_ledger(settings), rid)
    except LookupError as err:
        say(err_console(), str(err), "red")
        raise typer.Exit(1) from err
    say(out_console(), f"{rid}: re-queued as message {message_id}")


app.command("request-restore")(request_restore)
app.command("watch")(watch_folder)
app.command("preflight")(preflight)
app.command("replay-failures")(replay_failures)
app.command("top")(live_top)
app.add_typer(dlq_app, name="dlq")

ledger_app = typer.Typer(no_args_is_help=True, help="The ledger's database: its schema revision.")
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("upgrade")
@ledger_errors_in_one_line
def ledger_upgrade(ctx: typer.Context) -> None:
    """Migrate the ledger to the schema revision this finisher knows (once per release, from any one host)."""
    settings = ctx.obj.settings()
    done = upgrade_ledger(settings.ledger_url, lock_timeout_s=settings.ledger_lock_timeout)
    state = f"{done.before or 'none'} → {done.after}" if done.changed else f"{done.after}, already current"
    say(out_console(), f"ledger {done.location}: schema revision {state}")


@app.command()
def redrive(
    ctx: typer.Context,
    region: str | None = typer.Option(None, "--region", help="only this region"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="at most this many messages per region"),
) -> None:
    """Move messages from the DLQ back to the work queue (bodies kept, failure attributes dropped)."""
    settings = ctx.obj.settings()
    queues = work_queues(settings, AwsClients(settings.endpoint_url), [region] if region else None)
    if not queues:
        say(err_console(), f"no region {region!r} in environment {settings.environment.name}", "red")
        raise typer.Exit(2)
    for queue in queues:
        moved = queue.redrive(limit=limit)
        say(out_console(), f"{queue.region}: {moved} message(s) moved from {queue.dlq_name} to {queue.queue_name}")


@app.command()
@ledger_errors_in_one_line
def ingest(
    ctx: typer.Context, paths: list[Path] = typer.Argument(..., help=".bag.zip / .zip files"),
    works: list[str] = typer.Option(None, "--work", "-w", metavar="RID",
                                    help="a work the zip holds (repeat for a zip of several works; each must be "
                                         "there and no other). Default: the work named by the zip's file name"),
) -> None:
    """De-bag and sync local zips (no S3, no queue); recorded in the ledger like queued works. A refused zip is
    reported (its cause in the ledger) and the next one is taken; exit 1 when any was refused."""
    settings = ctx.obj.settings()
    for rid in works or []:
        if not is_rid(rid):
            raise typer.BadParameter(f"{rid!r} is not a work RID", param_hint="--work")
    expected = frozenset(works) if works else None
    ledger = open_ledger(settings)
    stages = ctx.obj.stages_for(settings, AwsClients(settings.endpoint_url).s3)
    failed = 0
    for path in paths:
        try:
            synced = ingest_zip(settings, stages, ledger, path, expected)
        except LedgerUnavailable:
            raise  # no zip can be recorded: stop here (one line, exit 3)
        except (FinisherError, OSError, ValueError) as err:
            failed += 1
            cause = f" ({err.cause})" if isinstance(err, FinisherError) else ""
            say(err_console(), f"{path}: {err}{cause}", "red")
            continue
        say(out_console(), f"{path.name}: synced {', '.join(synced)}")
    raise typer.Exit(1 if failed else 0)



def main(stages_for: StagesFor = real_stages) -> None:
    """The console script's entry point; ``stages_for`` builds the stages (a test's own in a finisher process)."""
    app(prog_name="finisher", obj=CliState(stages_for=stages_for))


if __name__ == "__main__":
    main()
