"""One unit of de-bag work: extract one zip member while hashing it, and the journal of verified members.

Each worker thread opens its own ``ZipFile`` handle on the downloaded zip (zipfile handles are not
thread-safe); zlib, hashlib and file writes release the GIL, so members are processed in parallel.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
import zlib
from pathlib import Path

from onprem.finisher.debag.budget import InflateBudget, SizeGuard
from onprem.finisher.debag.model import DebagSettings, MemberDigest, SafeMember, zip_mtime
from onprem.finisher.durability import start_writeback
from onprem.finisher.errors import CorruptArchive, ExtractionCancelled
from onprem.finisher.progress import Progress

CHUNK_SIZE = 1 << 20


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
            # (the zip may still be downloading, see fetch_debag/overlapped.py); members are read in 1 MiB chunks anyway
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


