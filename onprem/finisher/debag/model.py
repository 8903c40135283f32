"""The de-bag stage's data: its settings and results, a guarded member, the plan of a work, a member's digests,
and the extractor's protocol. No behaviour beyond small properties: every module of the stage shares these.
"""

from __future__ import annotations

import os
import threading
import time
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

import bagit

from contract.keys import STAGED_BAG_SUFFIX

#: algorithms a bag may be trusted with when ``require_strong_checksums`` is set
STRONG_ALGORITHMS = frozenset({"sha256", "sha512"})


@dataclass(frozen=True)
class DebagSettings:
    """Limits and policies of one de-bag; the defaults suit BDRC works (zips up to ~20 GB)."""

    #: largest declared or actual size of one member
    max_member_bytes: int = 8 * 2**30
    #: largest sum of declared member sizes in one zip
    max_total_bytes: int = 64 * 2**30
    #: largest declared uncompressed/compressed ratio of one member, at any size: above deflate's ceiling (~1032),
    #: so a blank scan is taken and a lying header is refused; with actual bytes never past the declared size,
    #: it bounds what a member writes by its compressed size
    max_member_ratio: float = 1100.0
    #: largest ratio of the whole zip, bytes inflated so far against compressed bytes taken on so far ...
    max_zip_ratio: float = 200.0
    #: ... applied once this much has been inflated (small zips of text compress very well)
    zip_ratio_floor_bytes: int = 64 * 2**20
    #: most entries (files, folders, junk) in one zip: bounds the memory and time of the central directory
    max_entries: int = 100_000
    #: longest member path in UTF-8 bytes: PATH_MAX (4096) less room for the staging dir and the temp dirs
    max_path_bytes: int = 4096 - 512
    #: reject bags whose manifests use only md5/sha1 (else accept them with a warning)
    require_strong_checksums: bool = False
    #: accept zips without a bag (extracted safely, reported as "no fixity available"); never a zip named
    #: ``*.bag.zip``, which must hold a bag (NoBagInZip): only a hand-delivered ``RID.zip`` may be plain
    allow_plain_zip: bool = True
    #: threads extracting and hashing members in parallel
    workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    #: keep the temp dir of a failed de-bag (renamed ``.debag-failed-…``) for inspection
    keep_evidence: bool = True
    #: flush the extracted files to storage (one syncfs) before the works move into place, so a placed work
    #: survives a power loss; off, it survives a killed process only (resume re-hashes journaled members either way)
    fsync: bool = True
    #: algorithms a member streamed from S3 is hashed with before the bag's manifest names are known (those seen
    #: on the way are added); a manifest needing another one is checked by reading the member back from disk
    stream_algorithms: tuple[str, ...] = ("sha512",)


@dataclass(frozen=True)
class DebaggedWork:
    """One work placed in the staging layout: ``path`` = ``<staging>/<work_rid>``."""

    work_rid: str
    path: Path
    bag: bool
    algorithms: tuple[str, ...]
    files: int
    bytes: int
    fixity_checked: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DebagResult:
    """What a de-bag produced from one zip."""

    archive: Path
    works: list[DebaggedWork]
    members_resumed: int = 0

    @property
    def work_rids(self) -> list[str]:
        return [work.work_rid for work in self.works]


@dataclass(frozen=True)
class SafeMember:
    """A member that passed the guard: ``name`` is its decoded name, ``path`` relative, normalized, never empty."""

    info: zipfile.ZipInfo
    path: PurePosixPath
    is_dir: bool
    name: str

BAG_SUFFIX = STAGED_BAG_SUFFIX

PAYLOAD_DIR = "data"


@dataclass(frozen=True)
class MemberTarget:
    """A file member, its path relative to the work's staging folder, and its path relative to its bag."""

    member: SafeMember
    target: PurePosixPath
    bag_path: str | None


@dataclass
class WorkPlan:
    """The members of one work (a bag or a plain work folder) and where they land."""

    work_rid: str
    bag: bool
    root: PurePosixPath
    payload: list[MemberTarget] = field(default_factory=list)
    tag_files: list[MemberTarget] = field(default_factory=list)
    dirs: list[tuple[SafeMember, PurePosixPath]] = field(default_factory=list)

    @property
    def bag_dir(self) -> PurePosixPath:
        """The tag files' folder relative to the work's staging folder."""
        return PurePosixPath(f"{self.work_rid}{BAG_SUFFIX}")


@dataclass(frozen=True)
class MemberDigest:
    """A member written to ``target`` with its size and hex digests."""

    name: str
    size: int
    crc: int
    digests: dict[str, str]


def zip_mtime(info: zipfile.ZipInfo) -> float:
    """The member's modification time (zip times are local, as bdrc-bag writes and restores them)."""
    return time.mktime((*info.date_time, 0, 0, -1))


class Extractor(Protocol):
    """Puts one member at ``target`` and gives its digests (``MemberExtractor``, ``stream_debag.StreamedExtractor``)."""

    def extract(self, member: SafeMember, target: Path, algorithms: tuple[str, ...],
                cancelled: threading.Event | None = None, *, report: bool = True) -> MemberDigest: ...

    def close(self) -> None: ...


@dataclass
class BagManifest:
    """Expected digests by path relative to the bag (NFC-normalized), split into payload and tag files."""

    algorithms: tuple[str, ...]
    payload: dict[str, dict[str, str]]
    tags: dict[str, dict[str, str]]
    oxum: tuple[int, int] | None
    warnings: list[str] = field(default_factory=list)
    #: digests of the extracted tag files, filled in once the algorithms are known
    tag_digests: dict[str, dict[str, str]] = field(default_factory=dict)


def nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def declared_algorithms(tag_paths: Iterable[str]) -> tuple[str, ...]:
    """The algorithms bagit will load for a bag whose tag files (relative to the bag) are ``tag_paths``.

    Known before the manifests are read: the payload can be hashed while they are still to come.
    Same order as bagit: payload manifests, then tag manifests, each in ``bagit.CHECKSUM_ALGOS`` order.
    """
    present = set(tag_paths)
    found: list[str] = []
    for prefix in ("manifest-", "tagmanifest-"):
        found += [alg for alg in bagit.CHECKSUM_ALGOS if f"{prefix}{alg}.txt" in present and alg not in found]
    return tuple(found)


class ManifestLoader(Protocol):
    """Reads a work's bag from its extracted tag files (``manifest.load_work_manifest``), as the de-bag's tag task."""

    def __call__(self, plan: WorkPlan, bag_dir: Path, tag_files: dict[str, Path],
                 settings: DebagSettings) -> BagManifest: ...
