"""Settings and results of the de-bag stage (kept apart so the safety guard and the stage share them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
