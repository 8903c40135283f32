"""Progress of a stage in bytes and files: a bar on a terminal, periodic log lines otherwise.

Stages call ``start`` once, ``advance`` from any thread, ``finish`` at the end; they never ask what kind of
reporter they were given. ``make_progress`` picks one for the current stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Protocol

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
