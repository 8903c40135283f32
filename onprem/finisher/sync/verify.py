"""The archive copy of a synced work checked against the staged work and its bag's manifests.

Run after ``syncOneWork.sh`` succeeds and before the staging copy is removed. Promised on success: the archive
folder holds exactly the staged work's files (same relative names, same sizes), a bag's payload there is exactly
its manifests' list, and every archive file either is the staged file itself (the same inode: a link-mode sync
of a file the de-bag already verified) or was re-hashed and matched the manifest's digest (a payload file) or the
staged file's digest (a tag file, a plain work's file). Anything else raises ``ArchiveCopyMismatch`` naming the
file and both sizes or digests; no archive folder at all raises ``ArchiveCopyMissing``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import bagit

from contract.keys import STAGED_BAG_SUFFIX as BAG_SUFFIX
from onprem.finisher.errors import ArchiveCopyMismatch, ArchiveCopyMissing

__all__ = ["ArchiveCheck", "verify_archive_copy"]

#: strongest first: the digest re-computed for a copied payload file
_PREFERRED_ALGORITHMS = ("sha512", "sha256", "sha1", "md5")
_CHUNK = 1 << 20
_PAYLOAD_PREFIX = "data/"
_SHOWN_PROBLEMS = 3


@dataclass(frozen=True)
class ArchiveCheck:
    """What the check covered: every file, their bytes, and how many had to be re-hashed (not the staged inode)."""

    files: int
    bytes: int
    rehashed: int


def verify_archive_copy(work_rid: str, staged_dir: Path, archive_dir: Path) -> ArchiveCheck:
    """Check ``archive_dir`` against the staged work ``staged_dir`` (see the module docstring)."""
    if not archive_dir.is_dir():
        raise ArchiveCopyMissing(work_rid, f"not in the archive at {archive_dir} although the sync script succeeded")
    staged, archived = _regular_files(staged_dir), _regular_files(archive_dir)
    problems = [f"{rel}: {kind} in the archive copy" for rel, kind in archived.items() if isinstance(kind, str)]
    problems += [f"{rel}: in the archive copy, not in the staged work" for rel in sorted(archived.keys() - staged)]
    problems += [f"{rel}: missing from the archive copy" for rel in sorted(staged.keys() - archived.keys())]
    manifest = _payload_manifest(work_rid, staged_dir, staged)
    if manifest is not None:
        payload = {nfc(rel) for rel in archived if not rel.startswith(f"{work_rid}{BAG_SUFFIX}/")}
        problems += [f"{rel}: listed in the manifest, missing from the archive copy"
                     for rel in sorted(manifest.keys() - payload)]
        problems += [f"{rel}: in the archive copy, listed in no manifest" for rel in sorted(payload - manifest.keys())]
    rehashed = nbytes = 0
    for rel, staged_stat in sorted(staged.items()):
        archive_stat = archived.get(rel)
        if not isinstance(archive_stat, os.stat_result) or not isinstance(staged_stat, os.stat_result):
            continue
        nbytes += archive_stat.st_size
        if archive_stat.st_size != staged_stat.st_size:
            problems.append(f"{rel}: size {archive_stat.st_size} in the archive copy, {staged_stat.st_size} staged")
            continue
        if (archive_stat.st_dev, archive_stat.st_ino) == (staged_stat.st_dev, staged_stat.st_ino):
            continue  # the staged file itself, verified by the de-bag: nothing to read
        rehashed += 1
        problem = _digest_problem(rel, staged_dir, archive_dir, (manifest or {}).get(nfc(rel)))
        if problem:
            problems.append(problem)
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = f" (+{len(problems) - _SHOWN_PROBLEMS} more)" if len(problems) > _SHOWN_PROBLEMS else ""
        raise ArchiveCopyMismatch(work_rid, f"the archive copy {archive_dir} differs from the staged work and its "
                                            f"manifests: {shown}{more}")
    return ArchiveCheck(files=len(archived), bytes=nbytes, rehashed=rehashed)


def _regular_files(root: Path) -> dict[str, os.stat_result | str]:
    """Every entry below ``root`` that is not a folder, by POSIX path relative to it: its lstat, or what else it is."""
    found: dict[str, os.stat_result | str] = {}
    # scandir with string prefixes: a Path per file costs more than the lstat (5,000 files: 0.6 s → 0.05 s)
    pending = [("", str(root))]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append((f"{rel}/", entry.path))
                    continue
                entry_stat = entry.stat(follow_symlinks=False)
                found[rel] = entry_stat if stat.S_ISREG(entry_stat.st_mode) else "not a regular file"
    return found


def _payload_manifest(work_rid: str, staged_dir: Path,
                      staged: dict[str, os.stat_result | str]) -> dict[str, tuple[str, str]] | None:
    """A bag's payload digests by path relative to the work (NFC), the strongest algorithm each; None: a plain work.

    The de-bag accepted this bag, so its manifests are read as they are, by bagit itself: paths decoded as bagit
    decodes them (``%0A``, ``%0D``), then ``%25`` for BagIt 1.0 (RFC 8493 §2.1.3); a 0.97 name that exists only
    literally (``a%0Ab.txt``) is the one meant, as in the de-bag.
    """
    bag_dir = staged_dir / f"{work_rid}{BAG_SUFFIX}"
    if not (bag_dir / "bagit.txt").is_file():
        return None
    prefix = f"{work_rid}{BAG_SUFFIX}/"
    payload_files = {nfc(rel) for rel in staged if not rel.startswith(prefix)}
    bag = bagit.Bag(str(bag_dir))
    percent_encoded = tuple(bag.version_info) >= (1, 0)
    digests = {}
    for path, by_algorithm in bag.payload_entries().items():
        rel = nfc(Path(path).as_posix()).removeprefix(_PAYLOAD_PREFIX)
        if percent_encoded:
            rel = rel.replace("%25", "%")
        elif rel not in payload_files and nfc(bagit._encode_filename(rel)) in payload_files:
            rel = nfc(bagit._encode_filename(rel))
        algorithm = next(alg for alg in (*_PREFERRED_ALGORITHMS, *by_algorithm) if alg in by_algorithm)
        digests[rel] = (algorithm, by_algorithm[algorithm].lower())
    return digests


def nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def _digest_problem(rel: str, staged_dir: Path, archive_dir: Path, expected: tuple[str, str] | None) -> str | None:
    """The re-hash of one archive file against the manifest's digest (or the staged file's): None when equal."""
    algorithm, digest = expected or ("sha256", _hexdigest(staged_dir / rel, "sha256"))
    source = "the manifest" if expected else "the staged file"
    actual = _hexdigest(archive_dir / rel, algorithm)
    if actual == digest:
        return None
    return f"{rel}: {algorithm} {actual} in the archive copy, {digest} in {source}"


def _hexdigest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
