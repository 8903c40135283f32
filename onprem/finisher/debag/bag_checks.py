"""The BagIt rules bagit's parser does not enforce, checked on a bag's raw tag files before bagit reads them.

bagit reads bagit.txt as ``utf-8-sig`` (a byte-order mark vanishes; only ``Bag.validate`` refuses it), strips
whitespace around every tag, normalizes a manifest path *before* checking it (``data/../bag-info.txt`` becomes
``bag-info.txt``), lets a decoding error escape as ``UnicodeDecodeError`` and never asks what a tag manifest
covers. Each rule here raises its named error with the work, the file and the rule:

- bagit.txt: no byte-order mark, no whitespace around a line, ``BagIt-Version: M.N``, a known encoding
  (BagDeclarationInvalid, TagFileUndecodable);
- bag-info.txt and every (tag) manifest decode in the declared encoding (TagFileUndecodable);
- a manifest path is normalized (``normpath(p) == p``) and a payload manifest lists only ``data/…``
  (UnsafeManifestPath);
- every tag manifest lists bagit.txt, bag-info.txt (when present) and every payload manifest
  (TagManifestIncomplete).
"""

from __future__ import annotations

import codecs
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from onprem.finisher.errors import BagDeclarationInvalid, TagFileUndecodable, TagManifestIncomplete, UnsafeManifestPath

BAGIT_TXT = "bagit.txt"
BAG_INFO = "bag-info.txt"
_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+")
_MANIFEST_RE = re.compile(r"(tag)?manifest-[A-Za-z0-9_]+\.txt")


@dataclass(frozen=True)
class Declaration:
    """What bagit.txt declares: the BagIt version (as a tuple) and the tag files' character encoding."""

    version: tuple[int, int]
    encoding: str


def check_declaration(bag_dir: Path, work_rid: str) -> Declaration:
    """bagit.txt as RFC 8493 §2.1.1 has it (bagit-python's validator refuses a BOM; we refuse what it strips too)."""
    raw = (bag_dir / BAGIT_TXT).read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raise BagDeclarationInvalid(work_rid, "bagit.txt starts with a byte-order mark (RFC 8493: it must not)")
    text = _decode(raw, "utf-8", BAGIT_TXT, work_rid)
    tags: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line == "":
            continue
        if line != line.strip():
            raise BagDeclarationInvalid(work_rid, f"bagit.txt line {number} {line!r} has whitespace around it")
        name, colon, value = line.partition(": ")
        if not colon or name != name.strip() or value != value.strip() or not value:
            raise BagDeclarationInvalid(work_rid, f"bagit.txt line {number} {line!r} is not 'Name: value'")
        tags[name] = value
    version = tags.get("BagIt-Version")
    encoding = tags.get("Tag-File-Character-Encoding")
    if version is None or encoding is None:
        raise BagDeclarationInvalid(work_rid, "bagit.txt lacks BagIt-Version or Tag-File-Character-Encoding")
    if not _VERSION_RE.fullmatch(version):
        raise BagDeclarationInvalid(work_rid, f"bagit.txt declares BagIt-Version {version!r} (expected M.N)")
    try:
        codecs.lookup(encoding)
    except LookupError as err:
        raise TagFileUndecodable(work_rid, f"bagit.txt declares an unknown Tag-File-Character-Encoding "
                                           f"{encoding!r}") from err
    major, minor = (int(part) for part in version.split("."))
    return Declaration((major, minor), encoding)


def manifest_paths(bag_dir: Path, tag_paths: set[str], declaration: Declaration,
                   work_rid: str) -> dict[str, list[str]]:
    """The raw paths each (tag) manifest lists, by manifest name; checks every text tag file decodes.

    Parsed as bagit parses them (stripped lines, ``#`` comments, ``*`` binary marker), not decoded
    (``%0A``…): the paths are those written in the file.
    """
    if BAG_INFO in tag_paths:
        _decode((bag_dir / BAG_INFO).read_bytes(), declaration.encoding, BAG_INFO, work_rid)
    listed: dict[str, list[str]] = {}
    for name in sorted(p for p in tag_paths if _MANIFEST_RE.fullmatch(p)):
        text = _decode((bag_dir / name).read_bytes(), declaration.encoding, name, work_rid)
        listed[name] = [path for path in (_entry_path(line) for line in text.splitlines()) if path is not None]
        for path in listed[name]:
            _check_path(path, name, work_rid)
    return listed


def check_tagmanifest_coverage(listed: dict[str, list[str]], tag_paths: set[str], work_rid: str) -> None:
    """Every tag manifest lists bagit.txt, bag-info.txt (when present) and every payload manifest."""
    required = {BAGIT_TXT} | ({BAG_INFO} & tag_paths) | {p for p in listed if p.startswith("manifest-")}
    for name, paths in sorted(listed.items()):
        if not name.startswith("tagmanifest-"):
            continue
        missing = sorted(required - set(paths))
        if missing:
            raise TagManifestIncomplete(work_rid, f"{name} does not list {', '.join(missing)} (a tag manifest "
                                                  "must cover bagit.txt, bag-info.txt and every payload manifest)",
                                        details=missing)


def _entry_path(line: str) -> str | None:
    line = line.strip()
    if line == "" or line.startswith("#"):
        return None
    entry = line.split(None, 1)
    return entry[1].lstrip("*") if len(entry) == 2 else None  # bagit logs and skips a malformed line too


def _check_path(path: str, manifest: str, work_rid: str) -> None:
    normalized = posixpath.normpath(path)
    if posixpath.isabs(path) or normalized == ".." or normalized.startswith("../"):
        raise UnsafeManifestPath(work_rid, f"{manifest} lists {path!r}, a path that escapes the bag")
    if normalized != path:
        raise UnsafeManifestPath(work_rid, f"{manifest} lists {path!r}, not a normalized path "
                                           f"(normalized: {normalized!r})")
    if manifest.startswith("manifest-") and not path.startswith("data/"):
        raise UnsafeManifestPath(work_rid, f"{manifest} lists {path!r} outside data/ (a payload manifest "
                                           "lists payload files only)")


def _decode(raw: bytes, encoding: str, name: str, work_rid: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise TagFileUndecodable(work_rid, f"{name} does not decode as {encoding} (byte {err.start}: "
                                           f"{raw[err.start:err.start + 1]!r}, declared in bagit.txt)") from err
