"""Zip safety: every member goes through ``guard_member`` before a byte of it is written.

``check_archive`` applies the per-member guard and the archive-wide rules (duplicates, overlapping entries,
declared totals) to a zip's central directory, and returns the members with their safe relative paths.
``SizeGuard`` counts the actual bytes while a member is extracted (declared sizes can lie).
"""

from __future__ import annotations

import itertools
import re
import stat
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from onprem.finisher.debag_model import DebagSettings
from onprem.finisher.errors import (
    DuplicateMember,
    NonUtf8MemberName,
    OverlappingMembers,
    SymlinkMember,
    UnsafeMemberPath,
    ZipBomb,
)

_UTF8_FLAG = 0x800
_LOCAL_HEADER_SIZE = 30
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class SafeMember:
    """A member that passed the guard: ``path`` is relative, normalized, never empty."""

    info: zipfile.ZipInfo
    path: PurePosixPath
    is_dir: bool

    @property
    def name(self) -> str:
        return self.info.filename


def guard_member(info: zipfile.ZipInfo, work_rid: str, settings: DebagSettings) -> SafeMember:
    """The one check every member path goes through; raises a named UnsafeArchive subclass or returns it."""
    name = info.filename
    if not info.flag_bits & _UTF8_FLAG and not name.isascii():
        raise NonUtf8MemberName(work_rid, f"member name {name!r} is not ASCII and not flagged UTF-8 (bit 11)")
    if "\\" in name:
        raise UnsafeMemberPath(work_rid, f"member {name!r} contains a backslash")
    if "\x00" in name:
        raise UnsafeMemberPath(work_rid, f"member {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise UnsafeMemberPath(work_rid, f"member {name!r} has an absolute path")
    if _DRIVE_RE.match(name):
        raise UnsafeMemberPath(work_rid, f"member {name!r} starts with a drive letter")
    is_dir = name.endswith("/")
    parts = name.rstrip("/").split("/") if is_dir else name.split("/")
    if any(part in ("..", ".", "") for part in parts):
        raise UnsafeMemberPath(work_rid, f"member {name!r} has a '..', '.' or empty path component")
    mode = info.external_attr >> 16
    if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a symlink" if stat.S_ISLNK(mode) else f"a special file (mode {oct(mode)})"
        raise SymlinkMember(work_rid, f"member {name!r} is {kind}")
    if not is_dir:
        _guard_declared_size(info, work_rid, settings)
    return SafeMember(info=info, path=PurePosixPath(*parts), is_dir=is_dir)


def _guard_declared_size(info: zipfile.ZipInfo, work_rid: str, settings: DebagSettings) -> None:
    if info.file_size > settings.max_member_bytes:
        raise ZipBomb(work_rid, f"member {info.filename!r} declares {info.file_size} bytes "
                                f"(limit {settings.max_member_bytes})")
    if info.file_size >= settings.ratio_min_bytes:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > settings.max_ratio:
            raise ZipBomb(work_rid, f"member {info.filename!r} has a compression ratio of {ratio:.0f} "
                                    f"(limit {settings.max_ratio:.0f})")


def check_archive(zf: zipfile.ZipFile, work_rid: str, settings: DebagSettings) -> list[SafeMember]:
    """Guard every member, then the archive-wide rules; returns the members in central-directory order."""
    members = [guard_member(info, work_rid, settings) for info in zf.infolist()]
    _check_duplicates(members, work_rid)
    _check_overlaps(members, work_rid, getattr(zf, "start_dir", None))
    total = sum(member.info.file_size for member in members)
    if total > settings.max_total_bytes:
        raise ZipBomb(work_rid, f"members declare {total} bytes in all (limit {settings.max_total_bytes})")
    return members


def _check_duplicates(members: list[SafeMember], work_rid: str) -> None:
    # NFC-normalized so that two spellings of one name cannot land on the same file
    seen: dict[str, str] = {}
    files = {unicodedata.normalize("NFC", str(m.path)) for m in members if not m.is_dir}
    for member in members:
        key = unicodedata.normalize("NFC", str(member.path))
        if key in seen and not (member.is_dir and seen[key].endswith("/")):
            raise DuplicateMember(work_rid, f"member {member.name!r} appears more than once "
                                            f"(also as {seen[key]!r})")
        seen[key] = member.name
        if not member.is_dir:
            for parent in member.path.parents:
                if unicodedata.normalize("NFC", str(parent)) in files:
                    raise DuplicateMember(work_rid, f"member {member.name!r} lies under a file of the same "
                                                    f"name {str(parent)!r}")


def _check_overlaps(members: list[SafeMember], work_rid: str, start_dir: int | None) -> None:
    # each member's data lies at least in [offset, offset + 30 + name + compressed size)
    spans = sorted(
        (m.info.header_offset,
         m.info.header_offset + _LOCAL_HEADER_SIZE + len(m.info.orig_filename.encode("utf-8"))
         + m.info.compress_size, m.name)
        for m in members
    )
    for (_, end, name), (start, _, next_name) in itertools.pairwise(spans):
        if start < end:
            raise OverlappingMembers(work_rid, f"members {name!r} and {next_name!r} overlap in the zip")
    if spans and start_dir is not None and spans[-1][1] > start_dir:
        raise OverlappingMembers(work_rid, f"member {spans[-1][2]!r} overlaps the central directory")


class SizeGuard:
    """Counts the bytes actually read from one member; raises ZipBomb past the declared size or the limit."""

    def __init__(self, member: SafeMember, work_rid: str, settings: DebagSettings) -> None:
        self.limit = min(member.info.file_size, settings.max_member_bytes)
        self.name, self.work_rid, self.count = member.name, work_rid, 0

    def add(self, nbytes: int) -> None:
        self.count += nbytes
        if self.count > self.limit:
            raise ZipBomb(self.work_rid, f"member {self.name!r} inflates past {self.limit} bytes")
