"""A bag's declarations and manifests, read by bagit from the tag files extracted to the temp dir.

First the raw tag files are held to what bagit's parser does not enforce: it reads bagit.txt as ``utf-8-sig`` (a
byte-order mark vanishes; only ``Bag.validate`` refuses it), strips whitespace around every tag, normalizes a
manifest path *before* checking it (``data/../bag-info.txt`` becomes ``bag-info.txt``), lets a decoding error
escape as ``UnicodeDecodeError`` and never asks what a tag manifest covers. Each rule raises its named error:

- bagit.txt: no byte-order mark, no whitespace around a line, ``BagIt-Version: M.N``, a known encoding
  (BagDeclarationInvalid, TagFileUndecodable);
- bag-info.txt and every (tag) manifest decode in the declared encoding (TagFileUndecodable);
- a manifest path is normalized (``normpath(p) == p``) and a payload manifest lists only ``data/…``
  (UnsafeManifestPath);
- every tag manifest lists bagit.txt, bag-info.txt (when present) and every payload manifest
  (TagManifestIncomplete).

bagit then parses bagit.txt, bag-info.txt and every (tag) manifest (``%0A``-encoded names, paths that escape the
bag); the restore policies follow: no fetch.txt, a tag manifest is required, weak algorithms warned about or
rejected, ``BDRC-RID`` agrees with the bag, Payload-Oxum parsed, and RFC 8493's ``%25`` decoded for BagIt >= 1.0.
"""

from __future__ import annotations

import codecs
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import bagit

from onprem.finisher.debag.model import PAYLOAD_DIR, STRONG_ALGORITHMS, BagManifest, DebagSettings, WorkPlan, nfc
from onprem.finisher.errors import (
    BagDeclarationInvalid,
    BagInvalid,
    BagRidMismatch,
    FetchFileRejected,
    MissingTagManifest,
    TagFileUndecodable,
    TagManifestIncomplete,
    UnsafeManifestPath,
    WeakChecksums,
)

logger = logging.getLogger(__name__)

BAGIT_TXT = "bagit.txt"
BAG_INFO = "bag-info.txt"
_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+")
_MANIFEST_RE = re.compile(r"(tag)?manifest-[A-Za-z0-9_]+\.txt")
#: RFC 8493 §2.1.3 (BagIt >= 1.0): ``%`` is written ``%25`` (bagit itself decodes only ``%0A``/``%0D``)
_PERCENT_25 = re.compile("%25")


@dataclass(frozen=True)
class Declaration:
    """What bagit.txt declares: the BagIt version (as a tuple) and the tag files' character encoding."""

    version: tuple[int, int]
    encoding: str


class _ExtractedBag(bagit.Bag):  # type: ignore[misc]
    """bagit's Bag with its manifest-path check made lexical: the same answer, without a ``realpath`` per entry.

    bagit resolves each manifest path with ``realpath`` (a few syscalls per path, ~0.1 ms, seconds for big
    manifests). The bag folder here holds only regular files extracted by the de-bag (zip members are never
    symlinks: safety.py), so below the bag folder's real path resolution is lexical: ``normpath``.
    """

    def _path_is_dangerous(self, path: str) -> bool:
        if os.path.isabs(path) or os.path.expanduser(path) != path:
            return True
        bag_path = self.__dict__.get("_real_bag_path")
        if bag_path is None:
            bag_path = self.__dict__["_real_bag_path"] = os.path.normpath(os.path.realpath(self.path))
        real_path = os.path.normpath(os.path.join(bag_path, path))
        return os.path.commonpath((bag_path, real_path)) != bag_path  # by components: stricter than bagit


def load_work_manifest(plan: WorkPlan, bag_dir: Path, tag_files: dict[str, Path],
                       settings: DebagSettings) -> BagManifest:
    """The bag of ``plan`` read from its tag files extracted to ``bag_dir`` (``tag_files``: path in the bag → file),
    with the digests of those tag files in the bag's algorithms (checked against its tag manifests later).

    Manifest paths are decoded as the bag's version says: ``%0A``/``%0D`` always (bagit), ``%25`` for
    BagIt >= 1.0 (RFC 8493). bagit-python writes 0.97 bags and never encodes ``%``, so in a bag < 1.0 a file
    literally named ``a%0Ab.txt`` is listed as it is: when only the literal name exists in the zip, that is the
    one meant.
    """
    work_rid, tag_paths = plan.work_rid, set(tag_files)
    payload_paths = {nfc(str(item.bag_path)) for item in plan.payload}
    if "fetch.txt" in tag_paths:
        raise FetchFileRejected(work_rid, "the bag has a fetch.txt: a restored bag must be complete")
    declaration = _check_declaration(bag_dir, work_rid)
    listed = _manifest_paths(bag_dir, tag_paths, declaration, work_rid)
    try:
        bag = _ExtractedBag(str(bag_dir))
    except bagit.BagError as err:
        if "is unsafe" in str(err):
            raise UnsafeManifestPath(work_rid, f"a manifest path escapes the bag: {err}") from err
        raise BagInvalid(work_rid, f"unreadable bag declaration or manifest: {err}") from err
    except (UnicodeError, LookupError) as err:  # every file bagit reads was decoded already: only a backstop
        raise TagFileUndecodable(work_rid, f"a tag file does not decode as {declaration.encoding}: {err}") from err
    _check_bdrc_rid(bag, work_rid)
    payload_algorithms = sorted(Path(p).stem.removeprefix("manifest-") for p in bag.manifest_files())
    if not payload_algorithms:
        raise BagInvalid(work_rid, "the bag has no payload manifest (manifest-<alg>.txt)")
    if not list(bag.tagmanifest_files()):
        raise MissingTagManifest(work_rid, "the bag has no tag manifest (tagmanifest-<alg>.txt)")
    _check_tagmanifest_coverage(listed, tag_paths, work_rid)
    warnings: list[str] = []
    if not STRONG_ALGORITHMS.intersection(payload_algorithms):
        message = f"the bag's manifests use only {', '.join(payload_algorithms)} (no sha256/sha512)"
        if settings.require_strong_checksums:
            raise WeakChecksums(work_rid, message)
        warnings.append(message)
        logger.warning("%s: %s", work_rid, message, extra={"work_rid": work_rid})
    unsupported = [alg for alg in bag.algorithms if alg not in bagit.CHECKSUM_ALGOS]
    if unsupported:
        raise BagInvalid(work_rid, f"unsupported manifest algorithm(s): {', '.join(unsupported)}")
    payload: dict[str, dict[str, str]] = {}
    tags: dict[str, dict[str, str]] = {}
    for path, digests in bag.entries.items():
        posix = nfc(Path(path).as_posix())
        if declaration.version >= (1, 0):
            posix = _PERCENT_25.sub("%", posix)  # after bagit's %0A/%0D: one pass, "%250A" stays "%0A"
        else:
            literal = nfc(bagit._encode_filename(posix))
            if posix not in payload_paths and literal in payload_paths:
                posix = literal
        lowered = {alg: digest.lower() for alg, digest in digests.items()}
        (payload if posix.startswith(f"{PAYLOAD_DIR}/") else tags)[posix] = lowered
    # small files, hashed with bagit's own helpers (fresh hashers per file)
    tag_digests = {nfc(rel): bagit._calculate_file_hashes(str(path), bagit.get_hashers(bag.algorithms))
                   for rel, path in tag_files.items()}
    return BagManifest(tuple(bag.algorithms), payload, tags, _oxum(bag, work_rid), warnings, tag_digests)


def _check_bdrc_rid(bag: bagit.Bag, work_rid: str) -> None:
    """``BDRC-RID`` in bag-info.txt, when present (every value, if repeated), names the bag's own work."""
    declared = bag.info.get("BDRC-RID")
    values = declared if isinstance(declared, list) else [] if declared is None else [declared]
    for value in values:
        if value != work_rid:
            raise BagRidMismatch(work_rid, f"bag-info.txt declares BDRC-RID {value!r}, the bag is {work_rid}: "
                                           "a bag's BDRC-RID must agree with its work")


def _oxum(bag: bagit.Bag, work_rid: str) -> tuple[int, int] | None:
    oxum = bag.info.get("Payload-Oxum")
    if oxum is None:
        return None
    if isinstance(oxum, list):
        oxum = oxum[0]
    octets, _, count = oxum.partition(".")
    if not (octets.isdigit() and count.isdigit()):
        raise BagInvalid(work_rid, f"malformed Payload-Oxum {oxum!r}")
    return int(octets), int(count)


def _check_declaration(bag_dir: Path, work_rid: str) -> Declaration:
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


def _manifest_paths(bag_dir: Path, tag_paths: set[str], declaration: Declaration,
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


def _check_tagmanifest_coverage(listed: dict[str, list[str]], tag_paths: set[str], work_rid: str) -> None:
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
