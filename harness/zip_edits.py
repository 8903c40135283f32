"""Edits of a built zip for the bad-input cases: a member read, rewritten, tampered, dropped, added or truncated.

    from harness.zip_edits import drop_member, tamper_member, edit_tag_file
    tamper_member(zip_path, "W1NLM4700.bag/data/W1NLM4700-I1KG1/images/W1NLM4700-I1KG1_0001.tif")

Each edit makes exactly one fault (a valid CRC over changed content is a bag checksum mismatch, not a zip error);
the zips themselves come from :mod:`harness.bags`.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath


def read_members(zip_path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    """Every member of ``zip_path`` in order, with its content."""
    with zipfile.ZipFile(zip_path) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def rewrite_zip(zip_path: Path, members: Sequence[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    """Write ``members`` (ZipInfo keeps name, time, mode and compression) to ``zip_path`` anew."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for info, content in members:
            zf.writestr(info, content)
    return zip_path


def tamper_member(zip_path: Path, member_name: str, *, offset: int = 0) -> None:
    """Change one byte of a member's content with a valid CRC: a bag checksum mismatch, not a zip error."""
    members = []
    for info, content in read_members(zip_path):
        if info.filename == member_name:
            content = content[:offset] + bytes([content[offset] ^ 0xFF]) + content[offset + 1:]
        members.append((info, content))
    rewrite_zip(zip_path, members)


def edit_tag_file(zip_path: Path, member_name: str, edit: Callable[[bytes], bytes]) -> None:
    """Change one tag file of a bag in a zip and refresh its digests in that bag's tag manifests.

    The bag's only fault is then the edit itself (no tag-manifest checksum mismatch hides the rule under test).
    A tag manifest edited this way is not refreshed.
    """
    folder = PurePosixPath(member_name).parent
    rel = PurePosixPath(member_name).relative_to(folder).as_posix()
    members = [(i, edit(c) if i.filename == member_name else c) for i, c in read_members(zip_path)]
    content = dict((i.filename, c) for i, c in members)[member_name]
    refreshed = []
    for info, data in members:
        found = re.fullmatch(r"tagmanifest-([a-z0-9_]+)\.txt", PurePosixPath(info.filename).name)
        if found and PurePosixPath(info.filename).parent == folder and info.filename != member_name:
            digest = hashlib.new(found.group(1), content).hexdigest().encode()
            data = re.sub(rb"(?m)^[0-9a-f]+( +\*?" + re.escape(rel.encode()) + rb"\r?)$",
                          lambda m, digest=digest: digest + m.group(1), data)
        refreshed.append((info, data))
    rewrite_zip(zip_path, refreshed)


def drop_member(zip_path: Path, member_name: str) -> None:
    """Rewrite ``zip_path`` without ``member_name``."""
    rewrite_zip(zip_path, [(i, c) for i, c in read_members(zip_path) if i.filename != member_name])


def add_member(zip_path: Path, member_name: str, content: bytes) -> None:
    """Append ``member_name`` to ``zip_path`` (the zip's own default compression)."""
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr(member_name, content)


def corrupt_one_byte(zip_path: Path, member_name: str, *, offset: int = 0) -> None:
    """Flip one byte of a member's stored (compressed) data in place: the zip's CRC check must fail."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(member_name)
    with open(zip_path, "r+b") as f:
        f.seek(info.header_offset + 26)
        header = f.read(4)
        name_len = int.from_bytes(header[:2], "little")
        extra_len = int.from_bytes(header[2:], "little")
        position = info.header_offset + 30 + name_len + extra_len + offset
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0xFF]))


def truncate_zip(zip_path: Path, keep_bytes: int) -> None:
    """Cut ``zip_path`` to its first ``keep_bytes`` bytes (an interrupted upload or copy)."""
    with open(zip_path, "r+b") as f:
        f.truncate(keep_bytes)
