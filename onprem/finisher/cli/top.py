"""``finisher top``: the live view of the finishers of this ledger — slots (each work's phase, stage, bytes, rate,
ETA), the backlog by restore expiry, the latest failures with their causes. Formatting only; the read model is
``work/live_view.py``. It reads the ledger and ``<state>/live/``, so it runs from another terminal (or container,
through the state volume) beside a running ``finisher run``. Every cell is plain text (``output.cells``)."""

from __future__ import annotations

import json
import signal
import threading
from datetime import datetime

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from onprem.finisher.cli.output import cells, ledger_errors_in_one_line, out_console
from onprem.finisher.work.live_view import LiveSnapshot, Slot, live_dir, read_snapshot


def human_bytes(n: float | None) -> str:
    """``1.5 MiB``: binary units, one decimal above bytes."""
    if n is None:
        return ""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h07m``; empty when unknown."""
    if seconds is None:
        return ""
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _age(now: datetime, then: datetime | None) -> str:
    return "" if then is None else f"{duration((now - then).total_seconds())} ago"


def _slot_row(slot: Slot, now: datetime) -> list[Text]:
    stage = slot.stage
    if stage is None:
        return cells(slot.work_rid, slot.phase, slot.doing, "", human_bytes(slot.size), "", "", "",
                     slot.owner.split("/")[0], _age(now, slot.heartbeat_at))
    percent = f"{100 * stage.bytes_done / stage.total_bytes:.0f}%" if stage.total_bytes else ""
    rate = f"{human_bytes(stage.rate_bytes_per_s)}/s" if stage.rate_bytes_per_s is not None else ""
    files = f" {stage.files_done}/{stage.total_files} files" if stage.total_files > 1 else ""  # a zip: 1 file
    return cells(slot.work_rid, slot.phase, f"{stage.label}{files}",
                 human_bytes(stage.bytes_done), human_bytes(stage.total_bytes), percent, rate,
                 duration(stage.eta_s), slot.owner.split("/")[0], _age(now, stage.updated_at))


def render(snapshot: LiveSnapshot) -> Group:
    """One frame: a summary line, then the slots, the backlog and the failures as tables."""
    now, phases = snapshot.at, snapshot.phases
    summary = Text(f"finisher top  {now:%Y-%m-%d %H:%M:%S} UTC  {len(snapshot.slots)} in slots, "
                   f"{snapshot.backlog_total} queued, {phases.get('synced', 0)} synced, "
                   f"{phases.get('failed', 0)} failed")
    slots = Table("work", "phase", "doing", "done", "of", "%", "rate", "ETA", "host:pid", "updated",
                  title="slots", title_justify="left")
    for slot in snapshot.slots:
        slots.add_row(*_slot_row(slot, now))
    backlog = Table("work", "restore expiry", "left", title=f"backlog by restore expiry ({snapshot.backlog_total})",
                    title_justify="left")
    for entry in snapshot.backlog:
        backlog.add_row(*cells(entry.work_rid, f"{entry.restore_expiry:%Y-%m-%d %H:%M} UTC",
                               duration(entry.hours_left * 3600)))
    failures = Table("work", "phase", "cause", "message", "attempts", "when", title="recent failures",
                     title_justify="left")
    for failure in snapshot.failures:
        failures.add_row(*cells(failure.work_rid, failure.phase, failure.cause, failure.message, failure.attempts,
                                _age(now, failure.at)))
    return Group(summary, slots, backlog, failures)


def top(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="print one frame and exit (for scripts)"),
    as_json: bool = typer.Option(False, "--json", help="print one snapshot as JSON and exit"),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="seconds between two frames"),
    backlog: int = typer.Option(10, "--backlog", min=0, help="backlog rows shown"),
    failures: int = typer.Option(8, "--failures", min=0, help="failures shown"),
) -> None:
    """A live view of this ledger's finishers: slots (phase, bytes, rate, ETA), the backlog by restore expiry,
    recent failures with causes. Reads the ledger and <state>/live/: run it beside `finisher run`. Ctrl-C (or SIGTERM)
    ends it."""
    settings = ctx.obj.settings()
    ledger = ctx.obj.ledger(settings)
    folder = live_dir(settings.state_dir)

    def frame() -> LiveSnapshot:
        return read_snapshot(ledger, folder, backlog_limit=backlog, failures_limit=failures)

    if as_json:
        print(json.dumps(frame().as_json()))
        return
    if once:
        out_console().print(render(frame()))
        return
    stop = threading.Event()
    # SIGTERM ends it like Ctrl-C: the live display is closed and the terminal's cursor shown again
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        with Live(render(frame()), console=Console(highlight=False), auto_refresh=False) as live:
            while not stop.wait(interval):
                live.update(render(frame()), refresh=True)
    except KeyboardInterrupt:
        stop.set()
    finally:
        signal.signal(signal.SIGTERM, previous)


#: registered on the app by ``app.py``: the command with its one-line ledger errors
command = ledger_errors_in_one_line(top)
