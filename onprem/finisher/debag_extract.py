"""One unit of de-bag work: extract one zip member while hashing it, and the journal of verified members.

Each worker thread opens its own ``ZipFile`` handle on the downloaded zip (zipfile handles are not
thread-safe); zlib, hashlib and file writes release the GIL, so members are processed in parallel.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from onprem.finisher.debag_model import DebagSettings
from onprem.finisher.durability import start_writeback
from onprem.finisher.errors import CorruptArchive
from onprem.finisher.progress import Progress
from onprem.finisher.zip_budget import InflateBudget, SizeGuard
from onprem.finisher.zip_safety import SafeMember

CHUNK_SIZE = 1 << 20


class ExtractionCancelled(Exception):
    """Another member failed: this one stops early (never escapes the de-bag stage)."""


@dataclass(frozen=True)
class MemberDigest:
    """A member written to ``target`` with its size and hex digests."""

    name: str
    size: int
    crc: int
    digests: dict[str, str]


def zip_mtime(info: zipfile.ZipInfo) -> float:
    """The member's modification time (zip times are local, as bdrc-bag writes and restores them)."""
    return time.mktime((*info.date_time, 0, 0, -1))


class Extractor(Protocol):
    """Puts one member at ``target`` and gives its digests (``MemberExtractor``, ``stream_debag.StreamedExtractor``)."""

    def extract(self, member: SafeMember, target: Path, algorithms: tuple[str, ...],
                cancelled: threading.Event | None = None, *, report: bool = True) -> MemberDigest: ...

    def close(self) -> None: ...


class MemberExtractor:
    """Extracts members of one zip, each thread with its own handle; ``close`` closes them all.

    Every member's bytes are counted against its declared size and one ``InflateBudget`` for the whole zip
    (zip_budget.py) before they are written: a bomb stops at the limit, not when the disk is full.
    """

    def __init__(self, zip_path: Path, work_rid: str, settings: DebagSettings, progress: Progress) -> None:
        self.zip_path, self.work_rid, self.settings, self.progress = zip_path, work_rid, settings, progress
        self.budget = InflateBudget(work_rid, settings)
        self._local = threading.local()
        self._handles: list[zipfile.ZipFile] = []
        self._files: list[io.FileIO] = []
        self._lock = threading.Lock()
        #: folders already created (one mkdir per folder, not per member)
        self._folders: set[Path] = set()

    def _zip(self) -> zipfile.ZipFile:
        handle = getattr(self._local, "zip", None)
        if handle is None:
            # unbuffered: a buffered reader could serve a member from bytes it read ahead before they had arrived
            # (the zip may still be downloading, see fetch_debag.py); members are read in 1 MiB chunks anyway
            raw = io.FileIO(self.zip_path, "r")
            handle = self._local.zip = zipfile.ZipFile(raw)
            with self._lock:
                self._handles.append(handle)
                self._files.append(raw)
        return handle

    def extract(self, member: SafeMember, target: Path, algorithms: tuple[str, ...],
                cancelled: threading.Event | None = None, *, report: bool = True) -> MemberDigest:
        """Write ``member`` to ``target`` hashing every algorithm in one pass; raise CorruptArchive on a bad CRC."""
        hashers = {alg: hashlib.new(alg) for alg in algorithms}
        guard = SizeGuard(member.name, member.info, self.work_rid, self.settings, self.budget)
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        try:
            with self._zip().open(member.info) as source, open(target, "wb") as sink:
                while chunk := source.read(CHUNK_SIZE):
                    if cancelled is not None and cancelled.is_set():
                        raise ExtractionCancelled(member.name)
                    guard.add(len(chunk))
                    for hasher in hashers.values():
                        hasher.update(chunk)
                    sink.write(chunk)
                    if report:
                        self.progress.advance(len(chunk))
                if self.settings.fsync:
                    sink.flush()
                    start_writeback(sink.fileno())  # flushed for good by one sync_filesystem before placing
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as err:
            raise CorruptArchive(self.work_rid, f"corrupt zip member {member.name}: {err}") from err
        mtime = zip_mtime(member.info)
        os.utime(target, (mtime, mtime))
        if report:
            self.progress.advance(files=1)
        return MemberDigest(member.name, guard.count, member.info.CRC,
                            {alg: h.hexdigest() for alg, h in hashers.items()})

    def close(self) -> None:
        with self._lock:
            for handle in self._handles:
                handle.close()
            for raw in self._files:
                raw.close()  # a ZipFile does not close a file object it was given
            self._handles.clear()
            self._files.clear()


def file_digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Hex digests of a file on disk (a journaled member re-checked after a restart)."""
    hashers = {alg: hashlib.new(alg) for alg in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {alg: h.hexdigest() for alg, h in hashers.items()}


class VerifiedJournal:
    """Append-only JSON lines of members already extracted and verified (skipped after a restart).

    Lines are not fsynced (a killed process keeps the page cache; only a power loss loses it): a member taken
    from the journal after a restart is hashed again from disk and redone unless it still has its digests.
    Durability comes from one ``sync_filesystem`` before the works move into place (``DebagSettings.fsync``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, MemberDigest] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["name"]] = MemberDigest(row["name"], row["size"], row["crc"], row["digests"])
                except (ValueError, KeyError, TypeError):
                    break  # a torn last line after a crash: what follows it is not trusted
        self._file = open(path, "a", encoding="utf-8")

    def reusable(self, member: SafeMember, target: Path, algorithms: tuple[str, ...]) -> MemberDigest | None:
        """The journaled digest when the member is unchanged and its file on disk still has that size and those
        digests (hashed again: the journal line may have outlived the file's bytes after a power loss)."""
        entry = self.entries.get(member.name)
        if (entry is None or entry.crc != member.info.CRC or entry.size != member.info.file_size
                or not set(algorithms) <= set(entry.digests)):
            return None
        try:
            if target.stat().st_size != entry.size:
                return None
            on_disk = file_digests(target, tuple(entry.digests))
        except FileNotFoundError:
            return None
        return entry if on_disk == entry.digests else None

    def record(self, digest: MemberDigest) -> None:
        self._file.write(json.dumps({"name": digest.name, "size": digest.size, "crc": digest.crc,
                                     "digests": digest.digests}) + "\n")
        self._file.flush()
        self.entries[digest.name] = digest

    def close(self) -> None:
        # the journal only saves work after a restart: failing to flush its tail (disk full) must not hide the
        # error that stopped the de-bag; a torn last line is ignored when the journal is read again
        with contextlib.suppress(OSError):
            self._file.close()
