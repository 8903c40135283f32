"""One segment's bytes, front to back: each entry's local header checked against the central directory, each
member inflated, hashed (CRC-32, the manifests' algorithms) and written once, at its final path.

Nothing here trusts a local header: its name, method, flags and (unless sizes follow the data, flag bit 3) CRC and
sizes must be the central directory's, and its data must end inside its span, or the zip is refused
(``LocalHeaderMismatch``). The central directory's sizes say where a member's data ends, so a data descriptor is
simply read past. Memory stays bounded: a chunk of the stream and one inflated piece at a time.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from onprem.finisher.debag.budget import InflateBudget, SizeGuard
from onprem.finisher.debag.model import DebagSettings, MemberDigest, raw_name, zip_mtime
from onprem.finisher.debag.segments import Role, Span
from onprem.finisher.durability import start_writeback
from onprem.finisher.errors import CorruptArchive, ExtractionCancelled, LocalHeaderMismatch
from onprem.finisher.progress import Progress

LOCAL_SIGNATURE = b"PK\x03\x04"
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_DATA_DESCRIPTOR = 0x08
_ZIP64_MARK = 0xFFFFFFFF
#: most bytes one inflate call may produce: a bomb's chunk never becomes a large buffer
INFLATE_PIECE = 1 << 20


class SegmentReader:
    """Exact reads over a segment's chunks; ``position`` is the zip offset of the next unread byte. Member data
    comes out as views into the chunks (no copy); a header is joined from its pieces."""

    def __init__(self, chunks: Iterator[bytes], start: int) -> None:
        self._chunks, self.position = chunks, start
        self._view, self._at = memoryview(b""), 0

    def exact(self, n: int, what: str, work_rid: str) -> bytes:
        return b"".join(self.pieces(n, what, work_rid))

    def pieces(self, n: int, what: str, work_rid: str) -> Iterator[memoryview]:
        """The next ``n`` bytes, in the pieces they arrived in (views, valid until the next read)."""
        while n > 0:
            if self._at >= len(self._view):
                chunk = next(self._chunks, None)
                if chunk is None:
                    raise CorruptArchive(work_rid, f"the zip ends inside {what}")
                self._view, self._at = memoryview(chunk), 0
            piece = self._view[self._at:self._at + n]
            self._at += len(piece)
            self.position += len(piece)
            n -= len(piece)
            yield piece

    def skip_to(self, offset: int, what: str, work_rid: str) -> None:
        for _ in self.pieces(offset - self.position, what, work_rid):
            pass


class MemberWriter:
    """Writes the members of the segments of one de-bag (shared by its threads: budget, folders made)."""

    def __init__(self, work_rid: str, settings: DebagSettings, progress: Progress, cancelled: threading.Event) -> None:
        self.work_rid, self.settings, self.progress, self.cancelled = work_rid, settings, progress, cancelled
        self.budget = InflateBudget(work_rid, settings)
        self._folders: set[Path] = set()

    def read_span(self, reader: SegmentReader, span: Span, target: Path | None,
                  algorithms: tuple[str, ...]) -> MemberDigest | None:
        """Consume ``span`` from ``reader``; a TAG or PAYLOAD member is written to ``target`` and its digest given."""
        info = span.info
        reader.skip_to(info.header_offset, "the bytes before the first member", self.work_rid)
        data_length = self._check_local_header(reader, span)
        digest = None
        if span.role is not Role.SKIP and target is not None:
            digest = self._write(reader, span, target, algorithms)
        else:
            reader.skip_to(reader.position + data_length, f"entry {info.filename!r}", self.work_rid)
        reader.skip_to(span.end, f"the bytes after member {info.filename!r}", self.work_rid)
        return digest

    def _check_local_header(self, reader: SegmentReader, span: Span) -> int:
        """The local header at the span's entry, held to the central directory; the length of its data."""
        info, rid = span.info, self.work_rid
        name = info.filename
        fields = _LOCAL.unpack(reader.exact(_LOCAL.size, f"the local header of {name!r}", rid))
        signature, _, flags, method, _, _, crc, compress_size, file_size, name_length, extra_length = fields
        if signature != LOCAL_SIGNATURE:
            raise LocalHeaderMismatch(rid, f"member {name!r}: no local file header at offset {info.header_offset} "
                                           "(the central directory points elsewhere)")
        local_name = reader.exact(name_length, f"the local name of {name!r}", rid)
        extra = reader.exact(extra_length, f"the local extra field of {name!r}", rid)
        problems = []
        if local_name != raw_name(info):
            problems.append(f"name {local_name[:120]!r}")
        if method != info.compress_type:
            problems.append(f"method {method} (directory: {info.compress_type})")
        if (flags ^ info.flag_bits) & 0x1:
            problems.append("encryption flag")
        if not flags & _DATA_DESCRIPTOR:
            if _ZIP64_MARK in (compress_size, file_size):
                file_size, compress_size = _zip64_sizes(extra, file_size, compress_size)
            if (crc, compress_size, file_size) != (info.CRC, info.compress_size, info.file_size):
                problems.append(f"CRC/sizes {crc:08x}/{compress_size}/{file_size} (directory: "
                                f"{info.CRC:08x}/{info.compress_size}/{info.file_size})")
        if reader.position + info.compress_size > span.end:
            problems.append("data running past the next entry or the central directory")
        if problems:
            raise LocalHeaderMismatch(rid, f"member {name!r}: its local header disagrees with the central "
                                           f"directory: {'; '.join(problems)}")
        return info.compress_size

    def _write(self, reader: SegmentReader, span: Span, target: Path, algorithms: tuple[str, ...]) -> MemberDigest:
        info, rid = span.info, self.work_rid
        assert span.target is not None
        name = span.target.member.name
        guard = SizeGuard(name, info, rid, self.settings, self.budget)
        hashers = [hashlib.new(alg) for alg in algorithms]
        inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        crc = 0
        report = span.role is Role.PAYLOAD
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        with open(target, "wb") as sink:
            for piece in reader.pieces(info.compress_size, f"member {name!r}", rid):
                if self.cancelled.is_set():
                    raise ExtractionCancelled(name)
                for out in _inflate(inflater, piece, rid, name):
                    guard.add(len(out))
                    crc = zlib.crc32(out, crc)
                    for hasher in hashers:
                        hasher.update(out)
                    sink.write(out)
                    if report:
                        self.progress.advance(len(out))
            if inflater is not None and not inflater.eof:
                raise CorruptArchive(rid, f"corrupt zip member {name}: the deflate stream ends early")
            if self.settings.fsync:
                sink.flush()
                start_writeback(sink.fileno())  # flushed for good by one sync_filesystem before placing
        if guard.count != info.file_size:
            raise CorruptArchive(rid, f"corrupt zip member {name}: {guard.count} bytes, the directory says "
                                      f"{info.file_size}")
        if crc != info.CRC:
            raise CorruptArchive(rid, f"corrupt zip member {name}: Bad CRC-32 (directory {info.CRC:08x}, "
                                      f"data {crc:08x})")
        mtime = zip_mtime(info)
        os.utime(target, (mtime, mtime))
        if report:
            self.progress.advance(files=1)
        return MemberDigest(name, guard.count, info.CRC, {alg: h.hexdigest() for alg, h in zip(algorithms, hashers,
                                                                                                 strict=True)})


def _inflate(inflater: zlib._Decompress | None, piece: memoryview, work_rid: str,
             name: str) -> Iterator[bytes | memoryview]:
    """The inflated bytes of one compressed piece, at most ``INFLATE_PIECE`` at a time (stored: the piece)."""
    if inflater is None:
        yield piece
        return
    try:
        out = inflater.decompress(piece, INFLATE_PIECE)
        while True:
            if out:
                yield out
            if not inflater.unconsumed_tail:
                break
            out = inflater.decompress(inflater.unconsumed_tail, INFLATE_PIECE)
    except zlib.error as err:
        raise CorruptArchive(work_rid, f"corrupt zip member {name}: {err}") from err


def _zip64_sizes(extra: bytes, file_size: int, compress_size: int) -> tuple[int, int]:
    """(uncompressed, compressed) from a local zip64 extra field: the fields marked 0xFFFFFFFF, in that order."""
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, at)
        if kind == 0x0001:
            values = list(struct.unpack_from(f"<{size // 8}Q", extra, at + 4))
            if file_size == _ZIP64_MARK and values:
                file_size = values.pop(0)
            if compress_size == _ZIP64_MARK and values:
                compress_size = values.pop(0)
            return file_size, compress_size
        at += 4 + size
    return file_size, compress_size

