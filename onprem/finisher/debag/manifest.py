"""A bag's declarations and manifests, read by bagit from the tag files extracted to the temp dir.

``bag_checks`` first holds the raw tag files to what bagit does not enforce (bagit.txt's form, encodings,
normalized manifest paths, what a tag manifest covers); bagit then parses bagit.txt, bag-info.txt and every
(tag) manifest (``%0A``-encoded names, paths that escape the bag); this module adds the restore policies: no
fetch.txt, a tag manifest is required, weak algorithms warned about or rejected, ``BDRC-RID`` agrees with the
bag, Payload-Oxum parsed, and RFC 8493's ``%25`` decoded for BagIt >= 1.0.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import bagit

from onprem.finisher.debag.bag_checks import check_declaration, check_tagmanifest_coverage, manifest_paths
from onprem.finisher.debag.model import PAYLOAD_DIR, STRONG_ALGORITHMS, BagManifest, DebagSettings, WorkPlan, nfc
from onprem.finisher.errors import (
    BagInvalid,
    BagRidMismatch,
    FetchFileRejected,
    MissingTagManifest,
    TagFileUndecodable,
    UnsafeManifestPath,
    WeakChecksums,
)

logger = logging.getLogger(__name__)

#: RFC 8493 §2.1.3 (BagIt >= 1.0): ``%`` is written ``%25`` (bagit itself decodes only ``%0A``/``%0D``)
_PERCENT_25 = re.compile("%25")


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


def load_bag_manifest(bag_dir: Path, work_rid: str, settings: DebagSettings, tag_paths: set[str],
                      payload_paths: set[str]) -> BagManifest:
    """Parse the bag whose tag files are in ``bag_dir``.

    ``tag_paths`` / ``payload_paths``: the bag's files in the zip, relative to the bag (payload NFC-normalized).
    Manifest paths are decoded as the bag's version says: ``%0A``/``%0D`` always (bagit), ``%25`` for
    BagIt >= 1.0 (RFC 8493). bagit-python writes 0.97 bags and never encodes ``%``, so in a bag < 1.0 a file
    literally named ``a%0Ab.txt`` is listed as it is: when only the literal name exists in the zip, that is the
    one meant.
    """
    if "fetch.txt" in tag_paths:
        raise FetchFileRejected(work_rid, "the bag has a fetch.txt: a restored bag must be complete")
    declaration = check_declaration(bag_dir, work_rid)
    listed = manifest_paths(bag_dir, tag_paths, declaration, work_rid)
    try:
        bag = _ExtractedBag(str(bag_dir))
    except bagit.BagError as err:
        if "is unsafe" in str(err):
            raise UnsafeManifestPath(work_rid, f"a manifest path escapes the bag: {err}") from err
        raise BagInvalid(work_rid, f"unreadable bag declaration or manifest: {err}") from err
    except (UnicodeError, LookupError) as err:  # bag_checks decoded every file bagit reads: only a backstop
        raise TagFileUndecodable(work_rid, f"a tag file does not decode as {declaration.encoding}: {err}") from err
    _check_bdrc_rid(bag, work_rid)
    payload_algorithms = sorted(Path(p).stem.removeprefix("manifest-") for p in bag.manifest_files())
    if not payload_algorithms:
        raise BagInvalid(work_rid, "the bag has no payload manifest (manifest-<alg>.txt)")
    if not list(bag.tagmanifest_files()):
        raise MissingTagManifest(work_rid, "the bag has no tag manifest (tagmanifest-<alg>.txt)")
    check_tagmanifest_coverage(listed, tag_paths, work_rid)
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
    return BagManifest(tuple(bag.algorithms), payload, tags, _oxum(bag, work_rid), warnings)


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


def load_work_manifest(plan: WorkPlan, bag_dir: Path, tag_files: dict[str, Path],
                       settings: DebagSettings) -> BagManifest:
    """The bag of ``plan`` read from its tag files extracted to ``bag_dir`` (``tag_files``: path in the bag → file),
    with the digests of those tag files in the bag's algorithms (checked against its tag manifests later)."""
    payload_paths = {nfc(str(item.bag_path)) for item in plan.payload}
    manifest = load_bag_manifest(bag_dir, plan.work_rid, settings, set(tag_files), payload_paths)
    # small files, hashed with bagit's own helpers (fresh hashers per file)
    manifest.tag_digests = {nfc(rel): bagit._calculate_file_hashes(str(path), bagit.get_hashers(manifest.algorithms))
                            for rel, path in tag_files.items()}
    return manifest
