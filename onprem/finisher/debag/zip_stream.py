"""Reading a zip front to back as its bytes arrive: each local file header, its member's bytes, then the rest.

A zip written to a seekable file (bdrc-bag, Python's zipfile, Info-ZIP, 7-Zip) gives every member's sizes and
CRC in its local header, so the members can be cut out of one stream in order. A zip that cannot be read that
way — sizes in a data descriptor after the data (flag bit 3) — raises ``StreamUnsupported`` before a byte of
that member is used: the caller reads the zip from disk instead. A member no path can read (encrypted, a
method other than stored or deflated) is refused by name at once (``zip_safety.refuse_unreadable``).

Nothing here trusts a header: the central directory read at the end goes through the zip-safety guard and must
agree with every local header seen (``fetch_debag/stream.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from onprem.finisher.debag.safety import refuse_unreadable
from onprem.finisher.errors import CorruptArchive, StreamUnsupported

__all__ = ["ChunkReader", "LocalHeader", "read_local_header"]

LOCAL_SIGNATURE = b"PK\x03\x04"
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_DATA_DESCRIPTOR = 0x08
_UTF8 = 0x800
_ZIP64_EXTRA = 0x0001
_ZIP64_MARK = 0xFFFFFFFF


@dataclass(frozen=True)
class LocalHeader:
    """One member as its local file header declares it; ``offset`` is where the header starts in the zip.

    ``raw_name`` is the name's bytes (compared with the central directory's); ``name`` their reading for
    messages and manifest names: UTF-8 when flagged or valid (Info-ZIP), else cp437 as zipfile reads them.
    """

    offset: int
    raw_name: bytes
    name: str
    flags: int
    method: int
    crc: int
    compress_size: int
    file_size: int

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


class ChunkReader:
    """Exact reads over an iterator of byte chunks; ``position`` is the number of bytes consumed so far.

    The unread bytes are ``_buffer[_at:]``: a read moves ``_at`` and copies only what it returns, so a zip of many
    small members costs no copy of the rest of each chunk per header read.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._at = 0
        self.position = 0

    def _available(self) -> int:
        return len(self._buffer) - self._at

    def _fill(self, n: int) -> bool:
        while self._available() < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._buffer = self._buffer[self._at:] + chunk if self._available() else chunk
            self._at = 0
        return True

    def _take(self, n: int) -> bytes:
        out = self._buffer[self._at:self._at + n]
        self._at += len(out)
        self.position += len(out)
        return out

    def peek(self, n: int) -> bytes:
        """Up to ``n`` next bytes, not consumed (fewer only at the end of the stream)."""
        self._fill(n)
        return self._buffer[self._at:self._at + n]

    def read_exact(self, n: int, what: str, work_rid: str) -> bytes:
        if not self._fill(n):
            raise CorruptArchive(work_rid, f"the zip ends inside {what}")
        return self._take(n)

    def iter_exact(self, n: int, what: str, work_rid: str) -> Iterator[bytes]:
        """The next ``n`` bytes, in the chunks they arrived in."""
        while n > 0:
            if not self._available() and not self._fill(1):
                raise CorruptArchive(work_rid, f"the zip ends inside {what}")
            piece = self._take(min(n, self._available()))
            n -= len(piece)
            yield piece

    def drain(self) -> None:
        """Read the stream to its end, keeping nothing."""
        self.position += self._available()
        self._buffer, self._at = b"", 0
        for chunk in self._chunks:
            self.position += len(chunk)

    def rest(self) -> bytes:
        """Everything left in the stream (the central directory and its end records)."""
        data = b"".join([self._buffer[self._at:], *self._chunks])
        self._buffer, self._at = b"", 0
        self.position += len(data)
        return data


def read_local_header(reader: ChunkReader, work_rid: str) -> LocalHeader | None:
    """The next member's local header, or None where the members end (the central directory starts)."""
    if reader.peek(4) != LOCAL_SIGNATURE:
        return None
    offset = reader.position
    (_, _, flags, method, _, _, crc, compress_size, file_size, name_length,
     extra_length) = _LOCAL.unpack(reader.read_exact(_LOCAL.size, "a local file header", work_rid))
    raw_name = reader.read_exact(name_length, "a member name", work_rid)
    extra = reader.read_exact(extra_length, "a local extra field", work_rid)
    name = _display_name(raw_name, flags)
    refuse_unreadable(name, flags, method, work_rid)
    if flags & _DATA_DESCRIPTOR:
        raise StreamUnsupported(f"member {name!r} keeps its sizes in a data descriptor after its data")
    if _ZIP64_MARK in (compress_size, file_size):
        file_size, compress_size = _zip64_sizes(extra, name, work_rid)
    return LocalHeader(offset, raw_name, name, flags, method, crc, compress_size, file_size)


def _display_name(raw_name: bytes, flags: int) -> str:
    # no "made on Unix" in a local header: the central directory's guard decides whether the name is accepted
    try:
        return raw_name.decode("utf-8")
    except UnicodeDecodeError:
        return raw_name.decode("utf-8" if flags & _UTF8 else "cp437", errors="replace")


def _zip64_sizes(extra: bytes, name: str, work_rid: str) -> tuple[int, int]:
    """(uncompressed, compressed) from a local header's zip64 extra field (both present there, in that order)."""
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, at)
        if kind == _ZIP64_EXTRA and size >= 16:
            return struct.unpack_from("<QQ", extra, at + 4)  # type: ignore[return-value]
        at += 4 + size
    raise CorruptArchive(work_rid, f"member {name!r} has zip64 sizes but no zip64 extra field in its local header")
