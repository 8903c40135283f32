"""The zip's plan, read from its tail alone: end of central directory (zip64 too) and the central directory.

One read of the last ``TAIL_READ`` bytes holds both for nearly every zip; a central directory larger than that
costs one more read of exactly what is missing. zipfile parses them from ``TailFile``, a file object over those
bytes. The entry count is checked from the end record before zipfile builds one object per entry.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from onprem.finisher.debag.budget import check_end_record
from onprem.finisher.debag.byte_source import ByteSource
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import CorruptArchive, NonUtf8MemberName

#: bytes of the first read of a zip's tail: the end records and the central directory of ~7,000 entries
TAIL_READ = 1 << 20


@dataclass(frozen=True)
class Directory:
    """A zip's central directory: the (closed) ZipFile that read it (every entry, junk and folders too), the tail."""

    archive: zipfile.ZipFile
    #: where the central directory starts: the bytes before it are the entries' local headers and data
    start_dir: int
    #: the bytes ``[start_dir, size)``
    tail: bytes


class TailFile(io.RawIOBase):
    """A read-only file of ``size`` bytes whose bytes from ``tail_start`` on are known; ``extend`` reads more."""

    def __init__(self, source: ByteSource, tail_start: int) -> None:
        self.source, self.size = source, source.size
        self.tail_start = tail_start
        self.tail = source.read(tail_start, self.size)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        if self._pos < self.tail_start:
            self.extend(self._pos)
        out = self.tail[self._pos - self.tail_start:end - self.tail_start]
        self._pos += len(out)
        return out

    def extend(self, start: int) -> None:
        """Read ``[start, tail_start)`` too: one more ranged read, of what is missing only."""
        self.tail = self.source.read(start, self.tail_start) + self.tail
        self.tail_start = start


def read_directory(source: ByteSource, work_rid: str, settings: DebagSettings) -> Directory:
    """The central directory of ``source``'s zip, not yet guarded; CorruptArchive when it cannot be read."""
    name = source.name
    try:
        tail = TailFile(source, max(0, source.size - TAIL_READ))
        endrec = zipfile._EndRecData(tail)  # type: ignore[attr-defined]
        if not endrec:
            raise CorruptArchive(work_rid, f"unreadable zip {name}: no end of central directory")
        cd_size = endrec[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
        check_end_record(endrec[zipfile._ECD_ENTRIES_TOTAL], cd_size, work_rid, settings,  # type: ignore[attr-defined]
                         where=name)
        cd_start = endrec[zipfile._ECD_LOCATION] - cd_size  # type: ignore[attr-defined]
        if 0 <= cd_start < tail.tail_start:
            tail.extend(cd_start)  # a directory larger than the first read: one more read, not one per entry
        with zipfile.ZipFile(tail) as zf:
            entries, start_dir = zf.infolist(), zf.start_dir
    except UnicodeDecodeError as err:  # zipfile decodes a bit-11 name strictly while reading the directory
        raise NonUtf8MemberName(work_rid, f"{name}: a member name flagged UTF-8 (bit 11) is not UTF-8: "
                                          f"{err.object[:120]!r}") from err
    except (zipfile.BadZipFile, EOFError, ValueError, OverflowError) as err:
        raise CorruptArchive(work_rid, f"unreadable zip {name}: {err}") from err
    if not 0 <= start_dir <= source.size or any(e.header_offset < 0 or e.header_offset >= start_dir
                                                for e in entries):
        raise CorruptArchive(work_rid, f"unreadable zip {name}: an entry's offset lies outside the members")
    return Directory(zf, start_dir, tail.tail[start_dir - tail.tail_start:])
