"""The checksums of the byte ranges read, for the whole object's (``fetch.checksum`` combines them): one per
range, cut where the caller asks (the upload's part boundaries); a range is hashed as its chunks arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: the checksum of a range: ``crc(data, previous) -> value`` (zlib.crc32's shape)
RangeChecksum = Callable[[bytes, int], int]


@dataclass(frozen=True)
class Piece:
    """The checksum of the object's bytes ``[start, end)``."""

    start: int
    end: int
    crc: int


class PieceHasher:
    """Hashes the bytes of ``[start, end)`` as they come, in pieces cut at every offset of ``cuts`` inside it."""

    def __init__(self, checksum: RangeChecksum, start: int, end: int, cuts: Iterable[int] = ()) -> None:
        self.checksum, self.end = checksum, end
        self.position = self._piece_start = start
        self._cuts = sorted(c for c in cuts if start < c < end)
        self._value = 0
        self.pieces: list[Piece] = []

    def feed(self, data: bytes) -> None:
        while self._cuts and self._cuts[0] <= self.position + len(data):
            cut = self._cuts.pop(0)
            head, data = data[:cut - self.position], data[cut - self.position:]
            self._value = self.checksum(head, self._value)
            self.pieces.append(Piece(self._piece_start, cut, self._value))
            self.position = self._piece_start = cut
            self._value = 0
        self._value = self.checksum(data, self._value)
        self.position += len(data)

    def so_far(self) -> list[Piece]:
        """The pieces of the bytes fed so far (the last one open)."""
        return [*self.pieces, Piece(self._piece_start, self.position, self._value)]
