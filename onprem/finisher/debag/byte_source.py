"""Where a zip's bytes come from: byte ranges of an S3 object (``fetch.s3.S3Source``) or of a local file. The
de-bag (``debag/ranged.py``) reads a zip only through ``ByteSource``: one small read of its tail, then whole byte
ranges streamed front to back, several at once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

CHUNK_SIZE = 1 << 20


class ByteSource(Protocol):
    """The bytes of one zip, by range; safe to use from several threads at once."""

    #: the zip's file name (``W1A.bag.zip``): decides whether the zip must hold bags
    name: str
    size: int
    #: what pins these bytes (ETag + version, or size + mtime): a resume journal of other bytes is not used
    identity: str

    def read(self, start: int, end: int) -> bytes:
        """The bytes ``[start, end)`` in memory (small reads only: the tail)."""
        ...

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes ``[start, end)`` in order, about ``CHUNK_SIZE`` at a time."""
        ...


class FileSource:
    """A zip on the local disk (``finisher ingest``, ``finisher watch``), read with ``pread``."""

    def __init__(self, path: Path) -> None:
        stat = path.stat()
        self.path, self.name, self.size = path, path.name, stat.st_size
        self.identity = f"file:{stat.st_size}:{stat.st_mtime_ns}"

    def read(self, start: int, end: int) -> bytes:
        return b"".join(self.chunks(start, end))

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_SEQUENTIAL)
            offset = start
            while offset < end:
                chunk = os.pread(fd, min(CHUNK_SIZE, end - offset), offset)
                if not chunk:
                    raise EOFError(f"{self.path.name} ends at {offset}, before {end}")
                offset += len(chunk)
                yield chunk
        finally:
            os.close(fd)
