"""A zip still being downloaded, as a de-bag MemberSource: a member is readable once its bytes are on disk.

The download writes parts into the full-size ``.part`` file (fetch.py), each sequentially from its start; this
object keeps the journaled parts, how far each part still arriving has been written, and ranges written apart
(the tail read ahead of a single stream), and wakes the de-bag workers waiting for a member whose byte span —
local header offset up to the next member's offset, or the central directory for the last one — is written.
zipfile reads the ``.part`` file as a zip as soon as its End of central directory and central directory are
there: it reads only the tail at open and a member's own bytes when that member is opened.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from onprem.finisher.debag.model import SafeMember
from onprem.finisher.errors import CorruptArchive, ExtractionCancelled, SourceUnavailable
from onprem.finisher.fetch.download import Download
from onprem.finisher.fetch.s3 import CHUNK_SIZE

#: the largest tail that can hold the End of central directory: its 22 bytes, a 64 KiB comment, zip64 records
TAIL_PROBE = 22 + 0xFFFF + 20 + 56
#: seconds between looks at a cancellation while a member's bytes are awaited
_WAKE_EVERY = 0.2
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_ZIP64_RECORDS = 56 + 20


class ArrivingZip:
    """Members of ``download``'s ``.part`` file become readable as the parts holding them are journaled."""

    def __init__(self, download: Download, settle: Callable[[], None]) -> None:
        self.download = download
        self._settle = settle
        self._arrived = set(download.journal.done)
        #: per part still arriving, the offset its sequential write reached (``[part start, offset)`` is there)
        self._reached: dict[int, int] = {}
        #: byte ranges written outside the parts (the tail read ahead of a single stream)
        self._ranges: list[tuple[int, int]] = []
        self._failure: BaseException | None = None
        self._ended = False
        self._spans: dict[str, tuple[int, int]] = {}
        self._cond = threading.Condition()

    @property
    def path(self) -> Path:
        return self.download.part_path

    # --- the download's side ---------------------------------------------------------------------------
    def part_arrived(self, part_number: int) -> None:
        with self._cond:
            self._arrived.add(part_number)
            self._cond.notify_all()

    def written(self, part_start: int, offset: int) -> None:
        """A part's bytes from its start up to ``offset`` are in the file (called as each chunk is written)."""
        with self._cond:
            self._reached[part_start // self.download.identity.part_size] = offset
            self._cond.notify_all()

    def write_ahead(self, start: int, data: bytes, small_part: int, give_up: threading.Event) -> bool:
        """Write ``data`` (read apart from the parts) at ``start`` where no part's write may already be there.

        Parts of at most ``small_part`` bytes are awaited (they come first) and not written over. A larger part
        reports through this object's lock and writes at most one chunk past what it reported: ``data`` is
        written only where that cannot reach, so the part's own bytes land after it (and are compared with
        ``data`` once the download ends). False: not written (``give_up`` set, or a part may be there already).
        """
        end = start + len(data)
        parts = list(self.download.parts_covering(start, end))
        with self._cond:
            while any(n not in self._arrived and self._part_bytes(n) <= small_part for n in parts):
                if give_up.is_set() or self._ended:
                    return False
                self._cond.wait(_WAKE_EVERY)
            spans = []
            for n in parts:
                part_start, part_end = self.download.part_range(n)
                if n in self._arrived:
                    continue
                first = max(start, part_start)
                if self._reached.get(n, part_start) + CHUNK_SIZE > first:
                    return False  # the part may have written there (or, not started, may start there any moment)
                spans.append((first, min(end, part_end)))
            fd = os.open(self.path, os.O_WRONLY)
            try:
                for first, last in spans:
                    os.pwrite(fd, data[first - start:last - start], first)
            finally:
                os.close(fd)
            self._ranges.append((start, end))
            self._cond.notify_all()
        return True

    def _part_bytes(self, part_number: int) -> int:
        part_start, part_end = self.download.part_range(part_number)
        return part_end - part_start

    def download_ended(self, error: BaseException | None) -> None:
        """Record how the download ended: waiters for missing bytes then raise SourceUnavailable(error)."""
        with self._cond:
            self._failure = error
            self._ended = True
            self._cond.notify_all()

    # --- the de-bag's side -----------------------------------------------------------------------------
    def expect(self, members: Iterable[SafeMember], central_directory_start: int) -> None:
        """Learn each member's span: ``[header_offset, next member's header_offset or the central directory)``."""
        ordered = sorted(members, key=lambda m: m.info.header_offset)
        ends = [m.info.header_offset for m in ordered[1:]] + [central_directory_start]
        self._spans = {m.name: (m.info.header_offset, end) for m, end in zip(ordered, ends, strict=True)}

    def wait_for(self, member: SafeMember, cancelled: threading.Event) -> None:
        start, end = self._spans[member.name]
        self.wait_range(start, end, cancelled, what=member.name)

    def wait_range(self, start: int, end: int, cancelled: threading.Event | None = None, *, what: str) -> None:
        """Return once every byte of ``[start, end)`` is journaled; SourceUnavailable if the download failed."""
        with self._cond:
            while not self._has(start, end):
                if self._ended:
                    raise SourceUnavailable(self._failure or CorruptArchive(
                        self.download.request.work_rid, f"the download ended without the bytes of {what}"))
                if cancelled is not None and cancelled.is_set():
                    raise ExtractionCancelled(what)
                self._cond.wait(_WAKE_EVERY)

    def settle(self) -> None:
        self._settle()

    def _has(self, start: int, end: int) -> bool:
        """Every byte of ``[start, end)`` is in a journaled part, a part's written prefix or a range written."""
        if any(s <= start and end <= e for s, e in self._ranges):
            return True
        for n in self.download.parts_covering(start, end):
            if n in self._arrived:
                continue
            part_start, part_end = self.download.part_range(n)
            if self._reached.get(n, part_start) < min(end, part_end):
                return False
        return True


def central_directory_start(path: Path, work_rid: str) -> int:
    """Where the central directory of the (possibly partial) zip at ``path`` starts, from its tail records.

    zipfile's own End-of-central-directory reader (zip64 and archive comment included) is used, and the start
    is computed as zipfile computes ``start_dir``, so the two always agree.
    """
    with open(path, "rb") as f:
        endrec = zipfile._EndRecData(f)  # type: ignore[attr-defined]
    if not endrec:
        raise CorruptArchive(work_rid, f"unreadable zip {path.name}: no End of central directory record")
    location, size = endrec[zipfile._ECD_LOCATION], endrec[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    start = location - size - (_ZIP64_RECORDS if endrec[0] == _ZIP64_END_SIGNATURE else 0)
    if start < 0:
        raise CorruptArchive(work_rid, f"unreadable zip {path.name}: bad offset for the central directory")
    return int(start)
