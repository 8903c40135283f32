"""Read-ahead inside one segment: its bytes as consecutive sub-ranges, the next ones fetched on connections the
other segments leave idle, handed on in order (a member is inflated and hashed front to back).

A segment holds one of the fetch's connections while it reads (``Connections.hold``). A large member is a segment
by itself, and the last segments of a zip run while the others' connections are done: without read-ahead either
reads on one connection while the rest idle. ``read_ahead`` borrows spare connections (never more than the
fetch's ``concurrency`` in all, never waiting for one) to fetch the sub-ranges after the one being consumed, each
whole in memory, at most ``ahead`` of them: memory stays bounded (``ahead`` x ``sub_range``) whatever the member.
The sub-ranges no borrowed read holds are streamed on the segment's own connection, ``OWN_SPAN`` per GET at most.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from onprem.finisher.debag.byte_source import ByteSource

__all__ = ["Connections", "read_ahead"]

#: the most sub-ranges one GET of a segment's own connection reads. A GET is never cut short when a connection
#: turns spare (the bytes a server sent past the cut are fetched for nothing: up to the socket buffers, or the
#: link's bandwidth-delay product, per cut), so what a spare connection cannot help stays this short; with no
#: spare connection a segment is a GET per two sub-ranges.
OWN_SPAN = 2


class Connections:
    """The fetch's ``n`` connections: a segment holds one while it reads, a read-ahead borrows a spare one."""

    def __init__(self, n: int) -> None:
        self._slots = threading.BoundedSemaphore(max(1, n))

    def hold(self) -> threading.BoundedSemaphore:
        """A connection held for as long as the ``with`` block that takes it (waiting for one to be free)."""
        return self._slots

    def borrow(self) -> bool:
        """A spare connection taken (give it back with ``give_back``), or False at once when none is spare."""
        return self._slots.acquire(blocking=False)

    def give_back(self) -> None:
        self._slots.release()


def read_ahead(source: ByteSource, start: int, end: int, *, sub_range: int, ahead: int, connections: Connections,
               pool: ThreadPoolExecutor) -> Generator[bytes, None, None]:
    """The bytes ``[start, end)`` in order, about ``CHUNK_SIZE`` at a time; up to ``ahead`` of the following
    ``sub_range``-sized sub-ranges fetched on borrowed connections meanwhile (module docstring).

    The segment's own connection reads one GET of up to ``OWN_SPAN`` sub-ranges, to the first borrowed one when
    that comes sooner. Nothing inside a GET in flight is borrowed: every GET is read to its end."""
    if ahead < 1 or end - start <= sub_range:
        yield from source.chunks(start, end)
        return
    cuts = [(begin, min(end, begin + sub_range)) for begin in range(start, end, sub_range)]
    borrowed: dict[int, Future[list[bytes]]] = {}
    started = 0
    own: _Stream | None = None

    def fetch(begin: int, stop: int) -> list[bytes]:
        try:
            return list(source.chunks(begin, stop))  # the chunks as they came: not joined, not copied
        finally:
            connections.give_back()

    try:
        own_last = 0  # the own GET in flight reads the sub-ranges before cuts[own_last]: none of them is borrowed
        for index, (begin, stop) in enumerate(cuts):
            started = max(started, index + 1, own_last)
            while started < min(len(cuts), index + 1 + ahead) and connections.borrow():
                try:
                    borrowed[started] = pool.submit(fetch, *cuts[started])
                except RuntimeError:  # the pool is shutting down (the de-bag stopped): no more read-ahead
                    connections.give_back()
                    break
                started += 1
            future = borrowed.pop(index, None)
            if future is None:
                if own is None:
                    own_last = min(min(borrowed, default=len(cuts)), index + OWN_SPAN)
                    own = _Stream(source, begin, cuts[own_last - 1][1])
                yield from own.take(stop - begin)
                if index + 1 == own_last:  # read to its end
                    own.close()
                    own = None
                continue
            chunks = future.result()
            chunks.reverse()
            while chunks:
                yield chunks.pop()  # each let go once handed on
    finally:
        if own is not None:
            own.close()
        for future in borrowed.values():
            if future.cancel():
                connections.give_back()  # never started: its connection was not used


class _Stream:
    """One read ``[start, end)`` of the source, consumed ``n`` bytes at a time (a chunk split where a take ends)."""

    def __init__(self, source: ByteSource, start: int, end: int) -> None:
        self.end = end
        self._chunks = source.chunks(start, end)
        self._chunk, self._at = b"", 0

    def take(self, n: int) -> Iterator[bytes]:
        while n > 0:
            if self._at >= len(self._chunk):
                chunk = next(self._chunks, None)
                if chunk is None:
                    raise EOFError(f"the read ends before its byte {self.end}")
                self._chunk, self._at = chunk, 0
            whole = self._at == 0 and n >= len(self._chunk)
            piece = self._chunk if whole else self._chunk[self._at:self._at + n]  # copied only where split
            self._at += len(piece)
            n -= len(piece)
            yield piece

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
