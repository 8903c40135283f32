"""``finisher watch DIR``: the feeder. Bag zips dropped in DIR are taken once complete and stable, de-bagged and
synced like ``finisher ingest``, and moved to ``DIR/done/`` or ``DIR/failed/`` (the mechanics: ``work/intake.py``).
Formatting and signals only."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import typer

from onprem.finisher.cli.output import err_console, ledger_errors_in_one_line, out_console, say
from onprem.finisher.errors import FolderBusy
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.ingest import ingest_zip
from onprem.finisher.work.intake import Intake, Taken, WatchSettings
from onprem.finisher.work.live_view import watch_progress

logger = logging.getLogger(__name__)


def _report(taken: Taken) -> None:
    if taken.outcome == "synced":
        say(out_console(), f"{taken.name}: synced {', '.join(taken.work_rids)}")
    elif taken.outcome == "already_synced":
        say(out_console(), f"{taken.name}: {', '.join(taken.work_rids)} {taken.message}")
    elif taken.outcome == "retry":
        say(err_console(), f"{taken.name}: {taken.message} ({taken.cause}): tried again later", "yellow")
    else:
        say(err_console(), f"{taken.name}: {taken.message} ({taken.cause}): moved to failed/", "red")


def watch(
    ctx: typer.Context,
    folder: Path = typer.Argument(..., file_okay=False, help="the folder bag zips are dropped in"),
    stable_seconds: float = typer.Option(30.0, "--stable-seconds", min=0,
                                         help="take a zip once its size and mtime are unchanged this long "
                                              "(a <name>.done marker beside it: at once)"),
    poll_seconds: float = typer.Option(2.0, "--poll-seconds", min=0.05, help="seconds between two looks"),
    retry_seconds: float = typer.Option(300.0, "--retry-seconds", min=0,
                                        help="a zip whose failure a retry can help is tried again after this"),
    drain: bool = typer.Option(False, "--drain", help="exit once no zip in the folder is waiting"),
) -> None:
    """Watch a folder: take each complete zip once, de-bag and sync it, move it to done/ or failed/ (the cause in
    <name>.cause beside it). Exit 1 when a zip failed (with --drain), 2 when another watcher holds the folder."""
    settings = ctx.obj.settings()
    ledger = ctx.obj.ledger(settings)
    stages = ctx.obj.stages_for(settings, AwsClients(settings.endpoint_url).s3)
    folder.mkdir(parents=True, exist_ok=True)

    progress_for = watch_progress(settings.state_dir)  # finisher top shows the zip being taken

    def ingest(path: Path, key: str) -> list[str]:
        return ingest_zip(settings, stages, ledger, path, idempotency_key=key, progress_for=progress_for)

    intake = Intake(folder, ledger, ingest, WatchSettings(stable_seconds=stable_seconds, poll_seconds=poll_seconds,
                                                          retry_seconds=retry_seconds), report=_report)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second signal: at once; the zip in taking/ is taken again at the next start
            logging.shutdown()
            os._exit(1)
        logger.info("signal %d: stopping after the zip being taken", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with intake.locked():
            say(out_console(), f"watching {intake.folder} (stable after {stable_seconds:g}s)")
            results = intake.run(stop, drain=drain)
    except FolderBusy as err:
        say(err_console(), str(err), "red")
        raise typer.Exit(2) from err
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    raise typer.Exit(1 if any(r.outcome == "failed" for r in results) else 0)


#: registered on the app by ``app.py``: the command with its one-line ledger errors
command = ledger_errors_in_one_line(watch)
