"""Read-ahead inside a segment: a member larger than a segment is read over several connections, in order, never
more connections than the fetch's concurrency, memory bounded by the sub-ranges held."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.bags import make_streamed_bag_zip
from onprem.finisher.debag.byte_source import FileSource
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.range_hash import PieceHasher
from onprem.finisher.debag.ranged import RangeReading, debag_source
from onprem.finisher.debag.read_ahead import Connections, read_ahead
from onprem.finisher.debag.staging import DebagJob
from onprem.finisher.fetch.checksum import combine_ranges, range_checksum


class _Watched:
    """Counts the reads in flight (the connections used) of the byte source it wraps; each chunk takes a little
    time, as a network read does."""

    def __init__(self, inner: object, delay_s: float = 0.002) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.active = self.most = 0
        self.reads: list[tuple[int, int]] = []
        #: reads closed before their end (what a server sent past that point was fetched for nothing)
        self.cut: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.reads.append((start, end))
        read = 0
        try:
            for chunk in self.inner.chunks(start, end):  # type: ignore[attr-defined]
                time.sleep(self.delay_s)
                read += len(chunk)
                yield chunk
        finally:
            with self._lock:
                self.active -= 1
                if read < end - start:
                    self.cut.append((start, end))


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        for at in range(start, end, 1 << 20):
            yield self.data[at:min(end, at + (1 << 20))]


def test_read_ahead_hands_on_every_byte_in_order_over_the_spare_connections() -> None:
    data = os.urandom(9 << 20)
    source = _Watched(_Bytes(data), delay_s=0.02)
    connections = Connections(3)
    with ThreadPoolExecutor(max_workers=3) as pool, connections.hold():
        got = b"".join(read_ahead(source, 5, len(data) - 7, sub_range=1 << 20, ahead=2,  # type: ignore[arg-type]
                                  connections=connections, pool=pool))
    assert got == data[5:len(data) - 7]
    assert 2 <= source.most <= 3  # the segment's own connection and the spare ones, never more
    assert sorted(source.reads)[0][0] == 5 and max(end for _, end in source.reads) == len(data) - 7
    # every connection given back: all three can be borrowed again
    assert [connections.borrow() for _ in range(4)] == [True, True, True, False]


def test_read_ahead_uses_no_connection_another_segment_holds() -> None:
    data = os.urandom(4 << 20)
    source = _Watched(_Bytes(data))
    connections = Connections(2)
    with ThreadPoolExecutor(max_workers=2) as pool, connections.hold(), connections.hold():
        got = b"".join(read_ahead(source, 0, len(data), sub_range=1 << 20, ahead=1,  # type: ignore[arg-type]
                                  connections=connections, pool=pool))
    # no spare connection: a read per two sub-ranges (OWN_SPAN), each to its end
    assert got == data and source.most == 1 and source.reads == [(0, 2 << 20), (2 << 20, 4 << 20)]
    assert source.cut == []


def test_a_connection_freed_mid_segment_takes_the_sub_ranges_after_the_one_being_read() -> None:
    data = os.urandom(6 << 20)
    source = _Watched(_Bytes(data))
    connections = Connections(2)
    with ThreadPoolExecutor(max_workers=2) as pool, connections.hold():
        assert connections.borrow()  # another segment holds the second connection
        stream = read_ahead(source, 0, len(data), sub_range=1 << 20, ahead=1,  # type: ignore[arg-type]
                            connections=connections, pool=pool)
        got = [next(stream)]
        connections.give_back()  # that segment ends: its connection is spare now
        got += list(stream)
    assert b"".join(got) == data
    # the own read began as two sub-ranges; the spare connection took the ones after it; each byte read once.
    # Before, the own read asked for the whole segment and was cut short where the borrowed sub-range began: the
    # bytes the server had sent past the cut were fetched for nothing (1.64 x the zip in the resume bench, 1.39
    # without the cut)
    assert source.reads[0] == (0, 2 << 20) and len(source.reads) > 2
    assert sum(end - start for start, end in source.reads) == len(data)
    assert source.cut == []
    assert [connections.borrow() for _ in range(3)] == [True, True, False]


def test_a_member_larger_than_a_segment_is_read_over_several_connections_and_verified(tmp_path: Path) -> None:
    bag = make_streamed_bag_zip(tmp_path, "W1BIG", total_bytes=26 << 20, file_bytes=26 << 20)
    source = _Watched(FileSource(bag.path))
    crc = range_checksum("crc64nvme")
    assert crc is not None
    pieces: list[object] = []
    result = debag_source(source, DebagJob("W1BIG", tmp_path / "staging", DebagSettings(fsync=False), "v1"),  # type: ignore[arg-type]
                          RangeReading(part_size=64 << 20, concurrency=4, range_checksum=crc,
                                       settle=pieces.extend))
    assert result.works[0].files == 1 and result.works[0].fixity_checked
    assert source.most >= 3  # the one member's sub-ranges read at once (before: one read, beside the folder entries)
    assert source.most <= 4  # never more than the fetch's connections
    # the ranges read still cover the whole object once, front to back: the full-object checksum combines
    whole = PieceHasher(crc, 0, bag.path.stat().st_size, ())
    whole.feed(bag.path.read_bytes())
    combined = combine_ranges("crc64nvme", [(p.start, p.end, p.crc) for p in pieces], bag.path.stat().st_size)  # type: ignore[attr-defined]
    assert combined == combine_ranges("crc64nvme", [(p.start, p.end, p.crc) for p in whole.so_far()],
                                      bag.path.stat().st_size)
