"""The feeder: a watched folder whose bag zips are taken once complete and stable, ingested, then moved aside.

A zip dropped in the folder (its top level; names ending ``.zip``, hidden and temp files ignored) is taken when its
size and mtime have not changed for ``stable_seconds``, or at once when a ``<name>.done`` marker is beside it, and
only if its end of central directory reads. Taking it moves it into ``taking/`` (one rename: a zip is never taken
twice, and a second watcher of the folder is refused by a lock); it is recorded in the ledger under its name, size
and SHA-256 (a zip already synced under them is moved to ``done/`` without being synced again); the ingest runs
(``work/ingest.py``, the de-bag and sync of the S3 path); then it moves to ``done/``, or to ``failed/`` with
``<name>.cause`` beside it. A retryable failure (archive unmounted, disk full) leaves it in ``taking/``, tried again
after ``retry_seconds``. A watcher killed mid-ingest finds the zip in ``taking/`` when it starts again and takes it
again under the same ledger key: a work already synced is not synced again, the rest is redone or resumed.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from onprem.finisher.errors import FinisherError, FolderBusy, LedgerUnavailable, RetryableError
from onprem.finisher.ledger.store import Ledger, Phase

logger = logging.getLogger(__name__)

TAKING, DONE, FAILED = "taking", "done", "failed"
MARKER = ".done"
LOCK_NAME = ".watch.lock"

#: the ingest of one taken zip under its ledger key: the synced RIDs, or a named error
Ingest = Callable[[Path, str], list[str]]


@dataclass(frozen=True)
class WatchSettings:
    """How the watcher decides a zip is complete, and how often it looks."""

    #: seconds a zip's size and mtime must stay unchanged before it is taken (a ``.done`` marker skips the wait)
    stable_seconds: float = 30.0
    #: seconds between two looks at the folder
    poll_seconds: float = 2.0
    #: seconds before a zip whose ingest failed in a way a retry can help is tried again
    retry_seconds: float = 300.0


@dataclass(frozen=True)
class Taken:
    """What became of one zip: ``synced``, ``already_synced``, ``failed`` or ``retry``."""

    name: str
    outcome: str
    work_rids: list[str] = field(default_factory=list)
    cause: str | None = None
    message: str | None = None


def watch_key(name: str, size: int, digest: str) -> str:
    """The ledger key of a watched zip: its name, size and SHA-256 (the same zip dropped again has the same key)."""
    return "ingest:" + hashlib.sha256(f"watch:{name}:{size}:sha256:{digest}".encode()).hexdigest()[:64]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def central_directory_reads(path: Path) -> bool:
    """True when the zip's end of central directory and its central directory read (the copy is complete)."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _aside(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<name>.<n>`` when a zip of that name is already there."""
    target, n = folder / name, 1
    while target.exists():
        target, n = folder / f"{name}.{n}", n + 1
    return target


class Intake:
    """One watcher of one folder (``finisher watch DIR``): ``run`` until ``stop`` is set, or one ``drain``."""

    def __init__(self, folder: Path, ledger: Ledger, ingest: Ingest, settings: WatchSettings = WatchSettings(),
                 *, report: Callable[[Taken], None] = lambda taken: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder, self.ledger, self.ingest, self.settings = folder.resolve(), ledger, ingest, settings
        self.report, self.clock = report, clock
        self._seen: dict[str, tuple[int, int, float]] = {}  # name → size, mtime_ns, since when unchanged
        self._retry_at: dict[str, float] = {}
        self._warned: set[str] = set()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The folder's lock for this process's life (released by the kernel if it dies); FolderBusy if held."""
        for sub in (TAKING, DONE, FAILED):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        with (self.folder / LOCK_NAME).open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                raise FolderBusy(f"{self.folder}: another finisher watch holds {LOCK_NAME}") from err
            yield

    def run(self, stop: threading.Event, *, drain: bool = False,
            may_end: Callable[[], bool] = lambda: True) -> list[Taken]:
        """Take zips as they become ready until ``stop`` is set (checked between zips), or with ``drain`` until
        no zip in the folder is waiting to become ready and ``may_end()`` (``run --drain --watch``: the queues are
        drained too). Zips left in ``taking/`` by a killed watcher go first."""
        results: list[Taken] = []
        while not stop.is_set():
            ready, waiting = self._ready()
            for path in ready:
                if stop.is_set():
                    break
                results.append(self._take(path))
            if drain and not waiting and not ready and may_end():
                break
            stop.wait(self.settings.poll_seconds if not ready else 0)
        return results

    def _ready(self) -> tuple[list[Path], int]:
        """The zips to take now (``taking/`` first), and how many others are still waiting to become ready."""
        now = self.clock()
        taking = [p for p in sorted((self.folder / TAKING).glob("*.zip")) if self._retry_at.get(p.name, 0) <= now]
        waiting = len([p for p in (self.folder / TAKING).glob("*.zip") if p not in taking])
        ready = []
        for path in sorted(self.folder.glob("*.zip")):
            if path.name.startswith(".") or not path.is_file() or (self.folder / TAKING / path.name).exists():
                continue  # hidden (a copy's temp file), or one of that name still being taken: its turn comes
            stat = path.stat()
            size, mtime, since = self._seen.get(path.name, (-1, -1, now))
            if (size, mtime) != (stat.st_size, stat.st_mtime_ns):
                self._seen[path.name] = (stat.st_size, stat.st_mtime_ns, now)
                since = now
            marked = path.with_name(path.name + MARKER).exists()
            if not marked and now - since < self.settings.stable_seconds:
                waiting += 1
            elif central_directory_reads(path) or marked:  # a marked zip that does not read fails as corrupt
                ready.append(path)
            elif path.name not in self._warned:
                self._warned.add(path.name)
                logger.warning("%s: unchanged for %gs but its central directory does not read: not taken (still "
                               "being copied, or truncated: add %s%s to take it as it is)", path,
                               self.settings.stable_seconds, path.name, MARKER)
        return taking + ready, waiting

    def _take(self, path: Path) -> Taken:
        if path.parent != self.folder / TAKING:
            claimed = self.folder / TAKING / path.name
            os.rename(path, claimed)  # the claim: one rename, the zip leaves the folder's top level
            self._seen.pop(path.name, None)
            path = claimed
        stat = path.stat()
        key = watch_key(path.name, stat.st_size, sha256_of(path))
        before = self.ledger.get(key)
        if before is not None and before.phase == Phase.SYNCED:  # dropped again, or synced before a kill
            taken = Taken(path.name, "already_synced", [before.work_rid],
                          message="synced before under the same name, size and SHA-256: not synced again")
            self._finish(path, DONE)
        else:
            taken = self._ingest(path, key)
        self.report(taken)
        return taken

    def _ingest(self, path: Path, key: str) -> Taken:
        try:
            rids = self.ingest(path, key)
        except LedgerUnavailable:
            raise  # nothing can be recorded: the watcher stops, the zip stays in taking/
        except (FinisherError, OSError, ValueError) as err:
            cause = err.cause if isinstance(err, FinisherError) else type(err).__name__
            if isinstance(err, RetryableError):
                self._retry_at[path.name] = self.clock() + self.settings.retry_seconds
                return Taken(path.name, "retry", cause=str(cause), message=str(err))
            target = self._finish(path, FAILED)
            target.with_name(target.name + ".cause").write_text(f"{cause}\n{err}\n", encoding="utf-8")
            return Taken(path.name, "failed", cause=str(cause), message=str(err))
        self._finish(path, DONE)
        return Taken(path.name, "synced", rids)

    def _finish(self, path: Path, where: str) -> Path:
        """Move a taken zip (and the marker it came with) to ``done/`` or ``failed/``."""
        target = _aside(self.folder / where, path.name)
        os.rename(path, target)
        self._retry_at.pop(path.name, None)
        self.folder.joinpath(path.name + MARKER).unlink(missing_ok=True)
        return target
