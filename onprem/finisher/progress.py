"""Progress of a stage in bytes and files: a bar on a terminal, periodic log lines otherwise.

Stages call ``start`` once, ``advance`` from any thread, ``finish`` at the end; they never ask what kind of
reporter they were given. ``make_progress`` picks one for the current stderr; ``RecordedProgress`` also keeps the
counts in a small JSON file another process reads (``finisher top``, ``work/live_view.py``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

logger = logging.getLogger(__name__)


class Progress(Protocol):
    """Callbacks a stage reports to; implementations are thread-safe."""

    def start(self, total_bytes: int, total_files: int) -> None: ...

    def advance(self, nbytes: int = 0, files: int = 0) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Reports nothing (tests, library use)."""

    def start(self, total_bytes: int, total_files: int) -> None:
        return None

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        return None

    def finish(self) -> None:
        return None


class CountingProgress:
    """Keeps the totals; the base of the log reporter and handy in tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total_bytes = 0
        self.total_files = 0
        self.bytes_done = 0
        self.files_done = 0
        self.finished = False

    def start(self, total_bytes: int, total_files: int) -> None:
        with self._lock:
            self.total_bytes, self.total_files = total_bytes, total_files

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        with self._lock:
            self.bytes_done += nbytes
            self.files_done += files

    def finish(self) -> None:
        self.finished = True


class LogProgress(CountingProgress):
    """One INFO line every ``interval`` seconds (and one at the end) for non-interactive runs."""

    def __init__(
        self, label: str, work_rid: str | None = None, *, interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.label, self.work_rid, self.interval, self._clock = label, work_rid, interval, clock
        self._started = self._last = clock()

    def start(self, total_bytes: int, total_files: int) -> None:
        super().start(total_bytes, total_files)
        self._started = self._last = self._clock()

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        super().advance(nbytes, files)
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._log()

    def finish(self) -> None:
        super().finish()
        self._log()

    def _log(self) -> None:
        elapsed = max(self._clock() - self._started, 1e-9)
        logger.info(
            "%s: %s %d/%d files, %d/%d MiB (%.1f MiB/s)", self.work_rid or "-", self.label, self.files_done,
            self.total_files, self.bytes_done >> 20, self.total_bytes >> 20, self.bytes_done / elapsed / 2**20,
            extra={"work_rid": self.work_rid, "bytes_done": self.bytes_done, "files_done": self.files_done},
        )


class RichProgress:
    """A rich progress bar on the terminal (bytes, with files in the description)."""

    def __init__(self, label: str, work_rid: str | None = None, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as RichBar,
        )

        self._lock = threading.Lock()
        self._label = f"{work_rid or '-'} {label}"
        self._files_done = self._total_files = 0
        self._bar = RichBar(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=Console(file=stream or sys.stderr),
        )
        self._task = self._bar.add_task(self._label, total=None)

    def start(self, total_bytes: int, total_files: int) -> None:
        with self._lock:
            self._total_files = total_files
            self._bar.start()
            self._bar.update(self._task, total=total_bytes, description=self._description())

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        with self._lock:
            self._files_done += files
            self._bar.update(self._task, advance=nbytes, description=self._description())

    def finish(self) -> None:
        with self._lock:
            self._bar.stop()

    def _description(self) -> str:
        return f"{self._label} {self._files_done}/{self._total_files} files"


def make_progress(label: str, work_rid: str | None = None, *, stream: IO[str] | None = None,
                  interval: float = 30.0) -> Progress:
    """A bar when ``stream`` (default stderr) is a terminal, else periodic log lines."""
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress(label, work_rid, stream)
    return LogProgress(label, work_rid, interval=interval)


#: the files of the works in progress: ``<live_dir>/<work_rid>.<label>.json``
LIVE_SUFFIX = ".json"


def live_file(live_dir: Path, work_rid: str, label: str) -> Path:
    """Where the progress of ``work_rid``'s stage ``label`` is kept (a name of letters, digits, ``-`` and ``_``)."""
    def safe(name: str) -> str:
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)

    return live_dir / f"{safe(work_rid)}.{safe(label)}{LIVE_SUFFIX}"


class RecordedProgress:
    """Forwards to an inner reporter and keeps the counts in ``path`` for readers in other processes: a JSON
    object (work, stage, bytes and files done and in all, a rate, host and pid, wall times), written whole to a
    temp file and renamed over the last one (a reader never sees half of it), at start, at most once every
    ``interval`` seconds while it advances, and at the finish. A write that fails is logged at DEBUG and never
    fails the stage: the file is for display only."""

    def __init__(self, inner: Progress, path: Path, work_rid: str, label: str, *, interval: float = 1.0,
                 kind: str = "queue", clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.inner, self.path, self.interval, self._clock, self._wall = inner, path, interval, clock, wall
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {
            "work_rid": work_rid, "label": label, "kind": kind, "host": socket.gethostname(), "pid": os.getpid(),
            "bytes_done": 0, "total_bytes": 0, "files_done": 0, "total_files": 0, "rate_bytes_per_s": None,
            "started_at": wall(), "updated_at": wall(), "finished": False}
        self._written_at: float | None = None
        self._written_bytes = 0

    def start(self, total_bytes: int, total_files: int) -> None:
        self.inner.start(total_bytes, total_files)
        with self._lock:
            self._state.update(total_bytes=total_bytes, total_files=total_files, started_at=self._wall())
            self._write(force=True)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        self.inner.advance(nbytes, files)
        with self._lock:
            self._state["bytes_done"] += nbytes
            self._state["files_done"] += files
            self._write(force=False)

    def finish(self) -> None:
        self.inner.finish()
        with self._lock:
            self._state["finished"] = True
            self._write(force=True)

    def _write(self, *, force: bool) -> None:
        now = self._clock()
        if not force and self._written_at is not None and now - self._written_at < self.interval:
            return
        if self._written_at is not None and now > self._written_at:
            # the rate between two writes, smoothed: what the stage does now, not its average since a resume
            recent = (self._state["bytes_done"] - self._written_bytes) / (now - self._written_at)
            previous = self._state["rate_bytes_per_s"]
            self._state["rate_bytes_per_s"] = recent if previous is None else 0.5 * previous + 0.5 * recent
        self._written_at, self._written_bytes = now, self._state["bytes_done"]
        self._state["updated_at"] = self._wall()
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_text(json.dumps(self._state), encoding="utf-8")
            os.replace(temp, self.path)
        except OSError as err:
            logger.debug("%s: progress not recorded in %s: %s", self._state["work_rid"], self.path, err)


def recording(make: Callable[[str, str], Progress], live_dir: Path, *, interval: float = 1.0,
              kind: str = "queue", keep_s: float = 86400.0) -> Callable[[str, str], Progress]:
    """``make``'s reporters, each recorded in ``live_dir`` (``RecordedProgress``) with ``kind``: ``queue`` (a
    leased work of ``run``) or ``watch`` (a zip of the watched folder: no lease). Files untouched for ``keep_s``
    (works long finished, or of a finisher that died) are removed when a reporter is made."""

    def progress_for(label: str, work_rid: str) -> Progress:
        cutoff = time.time() - keep_s
        try:
            for old in live_dir.glob(f"*{LIVE_SUFFIX}"):
                if old.stat().st_mtime < cutoff:
                    old.unlink(missing_ok=True)
        except OSError as err:
            logger.debug("old progress files of %s not removed: %s", live_dir, err)
        return RecordedProgress(make(label, work_rid), live_file(live_dir, work_rid, label), work_rid, label,
                                interval=interval, kind=kind)

    return progress_for
