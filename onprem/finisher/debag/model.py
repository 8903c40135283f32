"""The de-bag stage's data, shared by every module of the stage: its settings and results, a guarded member, the
plan of a work, a member's digests, a bag's manifest; no behaviour beyond small properties and name helpers."""

from __future__ import annotations

import os
import time
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import bagit
from pydantic import BaseModel, ConfigDict, Field

from contract.keys import STAGED_BAG_SUFFIX

#: algorithms a bag may be trusted with when ``require_strong_checksums`` is set
STRONG_ALGORITHMS = frozenset({"sha256", "sha512"})


class DebagSettings(BaseModel):
    """Limits and policies of one de-bag; the defaults suit BDRC works (zips up to ~20 GB) and live here only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: largest declared or actual size of one member
    max_member_bytes: int = Field(default=8 * 2**30, ge=0)
    #: largest sum of declared member sizes in one zip
    max_total_bytes: int = Field(default=64 * 2**30, ge=0)
    #: largest declared uncompressed/compressed ratio of one member, at any size: above deflate's ~1032 (budget.py)
    max_member_ratio: float = Field(default=1100.0, ge=1)
    #: largest ratio of the whole zip, bytes inflated so far against compressed bytes taken on so far ...
    max_zip_ratio: float = Field(default=200.0, ge=1)
    #: ... applied once this much has been inflated (small zips of text compress very well)
    zip_ratio_floor_bytes: int = Field(default=64 * 2**20, ge=0)
    #: most entries (files, folders, junk) in one zip: bounds the memory and time of the central directory
    max_entries: int = Field(default=100_000, ge=1)
    #: longest member path in UTF-8 bytes: PATH_MAX (4096) less room for the staging dir and the temp dirs
    max_path_bytes: int = Field(default=4096 - 512, ge=1, le=4096)
    #: reject bags whose manifests use only md5/sha1 (else accept them with a warning)
    require_strong_checksums: bool = False
    #: accept zips without a bag (extracted safely, "no fixity available"); never a ``*.bag.zip`` (layout.py)
    allow_plain_zip: bool = True
    #: threads extracting and hashing members in parallel
    workers: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    #: keep the temp dir of a failed de-bag (renamed ``.debag-failed-…``) for inspection
    keep_evidence: bool = True
    #: flush the extracted files to storage (one syncfs) before the works move into place, so a placed work
    #: survives a power loss; off, it survives a killed process only (resume re-hashes journaled members either way)
    fsync: bool = True


@dataclass(frozen=True)
class StagedWork:
    """One work placed in the staging layout (``path`` = ``<staging>/<work_rid>``): one shape from the de-bag,
    through the ledger's ``debagged`` detail (``to_detail``/``from_detail``), to the sync, in this attempt or a
    resumed one. The other fields say what the de-bag verified; their defaults say "not known" (an older entry,
    or a stage that only places files)."""

    work_rid: str
    path: Path
    bag: bool = False
    algorithms: tuple[str, ...] = ()
    files: int = 0
    bytes: int = 0
    fixity_checked: bool = False
    warnings: tuple[str, ...] = ()

    def to_detail(self) -> dict[str, Any]:
        """The work as the ledger's history stores it (JSON: a path as text, tuples as lists)."""
        return {"work_rid": self.work_rid, "path": str(self.path), "bag": self.bag,
                "algorithms": list(self.algorithms), "files": self.files, "bytes": self.bytes,
                "fixity_checked": self.fixity_checked, "warnings": list(self.warnings)}

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> StagedWork:
        """The work a ``to_detail`` entry describes; an older entry's missing fields take the defaults."""
        return cls(work_rid=str(detail["work_rid"]), path=Path(detail["path"]), bag=bool(detail.get("bag", False)),
                   algorithms=tuple(detail.get("algorithms") or ()), files=int(detail.get("files", 0)),
                   bytes=int(detail.get("bytes", 0)), fixity_checked=bool(detail.get("fixity_checked", False)),
                   warnings=tuple(detail.get("warnings") or ()))


@dataclass(frozen=True)
class DebagResult:
    """What a de-bag produced from one zip."""

    works: list[StagedWork]
    members_resumed: int = 0
    #: segments (ranged reads) not read again after a restart: their members were journaled as verified
    segments_resumed: int = 0


@dataclass(frozen=True)
class SafeMember:
    """A member that passed the guard: ``name`` is its decoded name, ``path`` relative, normalized, never empty."""

    info: zipfile.ZipInfo
    path: PurePosixPath
    is_dir: bool
    name: str


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
        return PurePosixPath(f"{self.work_rid}{STAGED_BAG_SUFFIX}")


@dataclass(frozen=True)
class MemberDigest:
    """A member written to ``target`` with its size and hex digests."""

    name: str
    size: int
    crc: int
    digests: dict[str, str]


def raw_name(info: zipfile.ZipInfo) -> bytes:
    """The member name's bytes as stored in the zip (zipfile decodes them as UTF-8 or cp437 by bit 11)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")


def zip_mtime(info: zipfile.ZipInfo) -> float:
    """The member's modification time (zip times are local, as bdrc-bag writes and restores them)."""
    return time.mktime((*info.date_time, 0, 0, -1))


@dataclass(frozen=True)
class BagManifest:
    """Expected digests by path relative to the bag (NFC-normalized), split into payload and tag files."""

    algorithms: tuple[str, ...]
    payload: dict[str, dict[str, str]]
    tags: dict[str, dict[str, str]]
    oxum: tuple[int, int] | None
    warnings: list[str]
    #: digests of the extracted tag files, in the bag's algorithms
    tag_digests: dict[str, dict[str, str]]


def nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def declared_algorithms(tag_paths: Iterable[str]) -> tuple[str, ...]:
    """The algorithms bagit will load for a bag whose tag files (relative to the bag) are ``tag_paths``.

    Known before the manifests are read: the payload can be hashed while they are still to come.
    Same order as bagit: payload manifests, then tag manifests, each in ``bagit.CHECKSUM_ALGOS`` order.
    """
    present = set(tag_paths)
    return tuple(dict.fromkeys(alg for prefix in ("manifest-", "tagmanifest-") for alg in bagit.CHECKSUM_ALGOS
                               if f"{prefix}{alg}.txt" in present))
