"""Zip safety: every member goes through ``guard_member`` before a byte of it is written.

``check_archive`` applies it and the archive-wide rules (entry count, duplicates and case twins, overlapping
entries, declared totals) to a zip's central directory; the bytes actually inflated are bounded while they are
written (``budget.py``).

Names: a name flagged UTF-8 (bit 11) is UTF-8; an unflagged one is ASCII, or raw UTF-8 when the entry was
made on Unix (Info-ZIP ``zip`` on Linux writes names as the filesystem gives them, without the flag); any other
name's encoding cannot be known and is refused. Every later step (layout, manifests, the stream's local
headers) sees ``SafeMember.name``, never zipfile's cp437 reading of the raw bytes.

macOS junk is never extracted and never refuses the zip: Finder and Archive Utility add ``__MACOSX/…/._name``
(AppleDouble: resource forks, extended attributes) and a ``.DS_Store`` (view settings) in every folder opened;
entries under ``__MACOSX/`` and ``.DS_Store`` files outside every bag are ignored and logged. Inside a bag (a
folder holding ``bagit.txt``) a ``.DS_Store`` is a file like any other: in the payload it is listed in no
manifest (BagIncomplete), as bagit-python would say. Junk is recognized from zipfile's reading of the raw name
(these names are ASCII), so a junk name that would not pass the guard cannot refuse the zip either.
"""
from __future__ import annotations

import itertools
import logging
import re
import stat
import zipfile
from collections.abc import Sequence
from pathlib import PurePosixPath

from contract.keys import control_characters
from onprem.finisher.debag.budget import check_declared, check_entries
from onprem.finisher.debag.model import DebagSettings, SafeMember, nfc, raw_name
from onprem.finisher.errors import (
    CaseCollision,
    ControlCharacterName,
    DuplicateMember,
    EncryptedMember,
    MemberNameTooLong,
    NonUtf8MemberName,
    OverlappingMembers,
    SymlinkMember,
    UnsafeMemberPath,
    UnsupportedCompression,
    ZipBomb,
)

logger = logging.getLogger(__name__)

_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
_LOCAL_HEADER_SIZE = 30
_UNIX = 3
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
#: NAME_MAX of the filesystems an archive lives on (ext4, xfs, zfs): one path component, in bytes
MAX_COMPONENT_BYTES = 255
SUPPORTED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "xz", 98: "PPMd", 99: "AES"}
MACOSX_DIR = "__MACOSX"
DS_STORE = ".DS_Store"


def member_name(info: zipfile.ZipInfo, work_rid: str) -> str:
    """The member's name as its writer meant it, or NonUtf8MemberName when that cannot be known."""
    if info.flag_bits & _UTF8_FLAG or info.orig_filename.isascii():
        return info.orig_filename
    raw = raw_name(info)
    if info.create_system == _UNIX:
        try:
            return raw.decode("utf-8")  # Info-ZIP on Linux: the filesystem's (UTF-8) bytes, unflagged
        except UnicodeDecodeError:
            pass
    raise NonUtf8MemberName(work_rid, f"member name {raw!r} is not ASCII, not flagged UTF-8 (bit 11) and not "
                                      "UTF-8 written on Unix: its encoding cannot be known")


def guard_member(info: zipfile.ZipInfo, work_rid: str, settings: DebagSettings) -> SafeMember:
    """The one check every member path goes through; raises a named UnsafeArchive subclass or returns it."""
    name = member_name(info, work_rid)
    _guard_characters(name, work_rid)
    if name.startswith("/"):
        raise UnsafeMemberPath(work_rid, f"member {name!r} has an absolute path")
    if _DRIVE_RE.match(name):
        raise UnsafeMemberPath(work_rid, f"member {name!r} starts with a drive letter")
    is_dir = name.endswith("/")
    parts = name.rstrip("/").split("/") if is_dir else name.split("/")
    if any(part in ("..", ".", "") for part in parts):
        raise UnsafeMemberPath(work_rid, f"member {name!r} has a '..', '.' or empty path component")
    _guard_length(name, parts, work_rid, settings)
    mode = info.external_attr >> 16
    if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a symlink" if stat.S_ISLNK(mode) else f"a special file (mode {oct(mode)})"
        raise SymlinkMember(work_rid, f"member {name!r} is {kind}")
    refuse_unreadable(name, info.flag_bits, info.compress_type, work_rid)
    if not is_dir:
        check_declared(name, info.file_size, info.compress_size, work_rid, settings)
    return SafeMember(info=info, path=PurePosixPath(*parts), is_dir=is_dir, name=name)


def refuse_unreadable(name: str, flags: int, method: int, work_rid: str) -> None:
    """EncryptedMember or UnsupportedCompression for a member whose bytes cannot be read: named before extraction,
    never a "corrupt zip member" found while inflating."""
    if flags & _ENCRYPTED_FLAG:
        raise EncryptedMember(work_rid, f"member {name!r} is encrypted (zip flag bit 0): a restored bag is never "
                                        "decrypted")
    if method not in SUPPORTED_METHODS:
        known = _METHOD_NAMES.get(method, "unknown")
        raise UnsupportedCompression(work_rid, f"member {name!r} uses compression method {method} ({known}); only "
                                               "stored (0) and deflated (8) are read")


def _guard_characters(name: str, work_rid: str) -> None:
    # the raw name: zipfile's ``filename`` stops at a NUL, so "a.tif\0../../x" would look like "a.tif"
    if "\x00" in name:
        raise UnsafeMemberPath(work_rid, f"member {name!r} contains a NUL byte")
    if "\\" in name:
        raise UnsafeMemberPath(work_rid, f"member {name!r} contains a backslash")
    found = control_characters(name)
    if found:
        raise ControlCharacterName(work_rid, f"member {name!r} contains control character(s) {', '.join(found)}")


def _guard_length(name: str, parts: list[str], work_rid: str, settings: DebagSettings) -> None:
    for part in parts:
        size = len(part.encode("utf-8"))
        if size > MAX_COMPONENT_BYTES:
            raise MemberNameTooLong(work_rid, f"member {name[:80]!r}…: the path component {part[:40]!r}… takes "
                                              f"{size} bytes (limit {MAX_COMPONENT_BYTES})")
    size = len(name.encode("utf-8"))
    if size > settings.max_path_bytes:
        raise MemberNameTooLong(work_rid, f"member {name[:80]!r}…: its path takes {size} bytes (limit "
                                          f"{settings.max_path_bytes}: PATH_MAX less room for the staging dir)")


def check_archive(zf: zipfile.ZipFile, work_rid: str, settings: DebagSettings) -> list[SafeMember]:
    """Set junk aside, guard every member, then the archive-wide rules; returns the members (decoded names, safe
    relative paths) in directory order."""
    infos = zf.infolist()
    check_entries(len(infos), work_rid, settings, where="the central directory")
    kept, junk = _split_junk(infos)
    _log_junk(junk, work_rid)
    members = [guard_member(info, work_rid, settings) for info in kept]
    _check_duplicates(members, work_rid)
    _check_case_twins(members, work_rid)
    _check_overlaps(members, work_rid, getattr(zf, "start_dir", None))
    total = sum(member.info.file_size for member in members)
    if total > settings.max_total_bytes:
        raise ZipBomb(work_rid, f"members declare {total} bytes in all (limit {settings.max_total_bytes})")
    compressed = sum(member.info.compress_size for member in members)
    if total > settings.zip_ratio_floor_bytes and total > settings.max_zip_ratio * max(compressed, 1):
        # the whole zip's ratio, from what it declares: refused before a byte is read (the inflate checks it too)
        raise ZipBomb(work_rid, f"members declare {total} bytes from {compressed} compressed (ratio "
                                f"{total / max(compressed, 1):.0f}, limit {settings.max_zip_ratio:.0f} past "
                                f"{settings.zip_ratio_floor_bytes} bytes)")
    return members


def _split_junk(infos: Sequence[zipfile.ZipInfo]) -> tuple[list[zipfile.ZipInfo], list[zipfile.ZipInfo]]:
    """(kept, junk): junk is ``__MACOSX/…`` and every ``.DS_Store`` that lies in no bag's folder."""
    bags = {PurePosixPath(info.orig_filename).parent for info in infos
            if _last(info.orig_filename) == "bagit.txt" and not _is_macosx(info.orig_filename)}
    kept: list[zipfile.ZipInfo] = []
    junk: list[zipfile.ZipInfo] = []
    for info in infos:
        name = info.orig_filename
        in_a_bag = any(parent in bags for parent in PurePosixPath(name).parents)
        (junk if _is_macosx(name) or (_last(name) == DS_STORE and not in_a_bag) else kept).append(info)
    return kept, junk


def _is_macosx(name: str) -> bool:
    return name.split("/", 1)[0] == MACOSX_DIR


def _last(name: str) -> str:
    return name.rpartition("/")[2]  # string work: no path object per entry of a large directory


def _log_junk(junk: Sequence[zipfile.ZipInfo], work_rid: str) -> None:
    """One WARNING naming how many entries were ignored and one of them (nothing when there is none)."""
    if not junk:
        return
    files = [info for info in junk if not info.is_dir()]
    first = (files or list(junk))[0]
    # junk names are never guarded: shown as UTF-8 where they are (Finder's are, unflagged), escaped by %r
    example = raw_name(first).decode("utf-8", errors="backslashreplace")
    logger.warning("%s: %d macOS entries ignored (__MACOSX/, .DS_Store outside the bag; never extracted), e.g. %r",
                   work_rid, len(junk), example, extra={"work_rid": work_rid, "ignored_entries": len(junk)})


def _check_duplicates(members: list[SafeMember], work_rid: str) -> None:
    # NFC-normalized so that two spellings of one name cannot land on the same file
    seen: dict[str, str] = {}
    keys = [nfc(str(m.path)) for m in members]
    files = {key for key, m in zip(keys, members, strict=True) if not m.is_dir}
    for key, member in zip(keys, members, strict=True):
        if key in seen and not (member.is_dir and seen[key].endswith("/")):
            raise DuplicateMember(work_rid, f"member {member.name!r} appears more than once "
                                            f"(also as {seen[key]!r})")
        seen[key] = member.name
        if not member.is_dir:
            parts = key.split("/")  # its folders by string work, no path object per entry
            for folder in ("/".join(parts[:depth]) for depth in range(len(parts) - 1, 0, -1)):
                if folder in files:
                    raise DuplicateMember(work_rid, f"member {member.name!r} lies under a file of the same "
                                                    f"name {folder!r}")


def _check_case_twins(members: list[SafeMember], work_rid: str) -> None:
    """Paths (and their folders) that differ only by case: one file or folder on a case-insensitive target."""
    spelled: dict[str, str] = {}
    done: set[str] = set()
    for member in members:
        spelling = nfc(str(member.path))
        # casefold keeps every "/", so the folded path splits into the same components
        parts, folded = spelling.split("/"), nfc(spelling.casefold()).split("/")
        for depth in range(len(parts), 0, -1):
            path = "/".join(parts[:depth])
            if path in done:
                break  # its folders were looked at with it
            done.add(path)
            other = spelled.setdefault("/".join(folded[:depth]), path)
            if other != path:
                raise CaseCollision(work_rid, f"member {member.name!r}: {path!r} and {other!r} differ only by "
                                              "case (one path on a case-insensitive archive)")


def _check_overlaps(members: list[SafeMember], work_rid: str, start_dir: int | None) -> None:
    # each member's data lies at least in [offset, offset + 30 + name + compressed size)
    spans = sorted(
        (m.info.header_offset,
         m.info.header_offset + _LOCAL_HEADER_SIZE + len(raw_name(m.info)) + m.info.compress_size, m.name)
        for m in members
    )
    for (_, end, name), (start, _, next_name) in itertools.pairwise(spans):
        if start < end:
            raise OverlappingMembers(work_rid, f"members {name!r} and {next_name!r} overlap in the zip")
    if spans and start_dir is not None and spans[-1][1] > start_dir:
        raise OverlappingMembers(work_rid, f"member {spans[-1][2]!r} overlaps the central directory")
