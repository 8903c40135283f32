"""Bomb limits: what a zip may declare, and what its members may inflate to while they are being written.

Three bounds, all in ``DebagSettings`` (and ``FINISHER_DEBAG_*`` variables):

- declared, before a byte is inflated: the entry count and the directory's size from the End of central directory
  (``check_end_record``, before zipfile builds one object per entry); each member's size and ratio, and the sum of
  sizes, from the central directory. Deflate cannot pass ~1032:1, so ``max_member_ratio`` sits above that: a
  blank scan is taken, a lie is refused.
- per member, while inflating: never a byte past its declared size (``SizeGuard``) — with the declared ratio,
  that bounds a member's output by its compressed size.
- per zip, while inflating (``InflateBudget``, one per de-bag shared by every writer thread): bytes inflated so
  far against compressed bytes taken on so far, once past a floor (small zips of text compress well).
"""

from __future__ import annotations

import threading
import zipfile

from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import ZipBomb

__all__ = ["InflateBudget", "SizeGuard", "check_declared", "check_end_record", "check_entries"]

#: average bytes one central-directory entry may take (46 fixed, name, extras): bounds the directory's size by
#: the entry-count limit, since zipfile reads entries until the declared directory size is used up
MAX_BYTES_PER_ENTRY = 1024


def check_end_record(entries: int, directory_bytes: int, work_rid: str, settings: DebagSettings, *,
                     where: str) -> None:
    """ZipBomb when the End of central directory declares more entries, or a larger directory, than allowed."""
    check_entries(entries, work_rid, settings, where=where)
    if directory_bytes > settings.max_entries * MAX_BYTES_PER_ENTRY:
        raise ZipBomb(work_rid, f"{where}: the central directory takes {directory_bytes} bytes (limit "
                                f"{settings.max_entries * MAX_BYTES_PER_ENTRY}: {settings.max_entries} entries)")


def check_entries(count: int, work_rid: str, settings: DebagSettings, *, where: str) -> None:
    """ZipBomb when ``count`` entries pass ``settings.max_entries``."""
    if count > settings.max_entries:
        raise ZipBomb(work_rid, f"{where}: {count} entries or more (limit {settings.max_entries})")


def check_declared(name: str, file_size: int, compress_size: int, work_rid: str, settings: DebagSettings) -> None:
    """A member's declared size and ratio, before a byte of it is inflated (central directory or local header)."""
    if file_size > settings.max_member_bytes:
        raise ZipBomb(work_rid, f"member {name!r} declares {file_size} bytes (limit {settings.max_member_bytes})")
    ratio = file_size / max(compress_size, 1)
    if file_size and ratio > settings.max_member_ratio:
        raise ZipBomb(work_rid, f"member {name!r} declares a compression ratio of {ratio:.0f} "
                                f"(limit {settings.max_member_ratio:.0f}; deflate cannot pass ~1032)")


class InflateBudget:
    """The per-zip bound (module docstring), thread-safe: ``take``, called before each chunk is written, raises
    ZipBomb so that the chunk that would pass a limit never reaches the disk."""

    def __init__(self, work_rid: str, settings: DebagSettings) -> None:
        self.work_rid, self.settings = work_rid, settings
        self.inflated = self.compressed = 0
        self._lock = threading.Lock()

    def take(self, compressed: int, inflated: int, name: str) -> None:
        """Count ``compressed`` bytes taken on and ``inflated`` bytes about to be written for member ``name``."""
        settings = self.settings
        with self._lock:
            self.compressed += compressed
            self.inflated += inflated
            total, taken = self.inflated, self.compressed
        if total > settings.max_total_bytes:
            raise ZipBomb(self.work_rid, f"member {name!r}: the zip inflates past {settings.max_total_bytes} bytes")
        if total > settings.zip_ratio_floor_bytes and total > settings.max_zip_ratio * max(taken, 1):
            raise ZipBomb(self.work_rid, f"member {name!r}: the zip inflates {total} bytes from {taken} compressed "
                                         f"(ratio {total / max(taken, 1):.0f}, limit {settings.max_zip_ratio:.0f} "
                                         f"past {settings.zip_ratio_floor_bytes} bytes)")


class SizeGuard:
    """Counts the bytes actually read from one member; raises ZipBomb past the declared size, a limit or the budget
    (which takes on the member's compressed size when the guard is made: the ratio counts every member started)."""

    def __init__(self, name: str, info: zipfile.ZipInfo, work_rid: str, settings: DebagSettings,
                 budget: InflateBudget) -> None:
        self.limit = min(info.file_size, settings.max_member_bytes)
        self.name, self.work_rid, self.count, self.budget = name, work_rid, 0, budget
        budget.take(info.compress_size, 0, name)

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` about to be written (call before writing them)."""
        self.count += nbytes
        if self.count > self.limit:
            raise ZipBomb(self.work_rid, f"member {self.name!r} inflates past {self.limit} bytes")
        self.budget.take(0, nbytes, self.name)

