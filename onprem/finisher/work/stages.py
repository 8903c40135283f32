"""The seam between the worker and the stages: what a stage call gets and gives, and the narrow protocols.

The worker (``runner.py``) knows only these and the one shape of a staged work (``debag.model.StagedWork``: what
the de-bag returns, the ledger's ``debagged`` detail holds and the sync takes); ``wiring.py`` binds them to the
real fetch + de-bag (one pass over the object's ranges: the zip is never on disk) and sync stages; the de-bag
of a local zip is ``finisher ingest``'s.
Each object version (idempotency key) gets its own staging slot, ``<works>/<slot>/`` (``staging_slot``): two
objects with the same RID in two buckets never share a de-bag temp dir or a staged work folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Protocol

from contract import ObjectHead, RestoredWork
from onprem.finisher.debag.model import StagedWork
from onprem.finisher.progress import Progress
from onprem.finisher.work.cancel import CancelToken

#: the checksum note of a ``downloaded`` entry an older finisher wrote: it recorded none
OLD_ENTRY_NOTE = "not recorded (an older finisher's entry)"


@dataclass(frozen=True)
class StageContext:
    """What every stage call gets: the cancel token and a progress reporter per label."""

    cancel: CancelToken
    progress: Callable[[str], Progress]
    #: the attempt's HEAD of the message's object (the restore check's): the fetch pins to it, never HEADs again
    head: ObjectHead | None = None


@dataclass(frozen=True)
class Fetched:
    """What was fetched, as the ledger's ``downloaded`` entry holds it: the object read (its S3 key; nothing of it
    is written on disk), its size, the segments a restart found verified, and the whole-object checksum check."""

    object: str
    size: int
    segments_resumed: int = 0
    #: the S3 checksum algorithm verified over the whole object (``crc64nvme`` …), None when none could be
    checksum_verified: str | None = None
    #: what the checksum check was or why there was none (``"no S3 checksum …"``)
    checksum_note: str = ""

    def to_detail(self) -> dict[str, Any]:
        return {"object": self.object, "size": self.size, "segments_resumed": self.segments_resumed,
                "checksum_verified": self.checksum_verified, "checksum_note": self.checksum_note}

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> Fetched:
        """A ``downloaded`` entry read back, also one an older finisher wrote (``path`` of a zip in
        ``<staging>/downloads/``, ``resumed_parts``, no checksum recorded)."""
        name = detail.get("object") or PurePath(str(detail.get("path") or "")).name
        return cls(object=str(name), size=int(detail.get("size") or 0),
                   segments_resumed=int(detail.get("segments_resumed", detail.get("resumed_parts")) or 0),
                   checksum_verified=detail.get("checksum_verified"),
                   checksum_note=str(detail.get("checksum_note", OLD_ENTRY_NOTE if "path" in detail else "")))


@dataclass(frozen=True)
class Synced:
    work_rid: str
    archive_path: Path | None
    details: dict[str, Any] = field(default_factory=dict)


class DebagStage(Protocol):
    """The de-bag of a local zip (``finisher ingest``); ``version_key`` names the object version: its staging
    slot."""

    def __call__(self, work_rid: str, zip_path: Path, version_key: str | None, ctx: StageContext, *,
                 expected_rids: frozenset[str] | None = None) -> list[StagedWork]:
        """``expected_rids``: the works the zip must hold, exactly (None: ``{work_rid}``, what a fetched key holds)."""
        ...


class SyncStage(Protocol):
    def __call__(self, staged: StagedWork, ctx: StageContext) -> Synced: ...


class HookStage(Protocol):
    """The post-sync hook of one synced work (its own phase: ``hook_phase.py``); HookFailed when it fails."""

    def __call__(self, work_rid: str, archive_path: Path, log_path: Path | None, ctx: StageContext) -> None: ...


class FetchDebagStage(Protocol):
    """Fetch and de-bag in one pass: each member written once at its final path as its bytes arrive."""

    def __call__(self, work: RestoredWork, ctx: StageContext) -> tuple[Fetched, list[StagedWork]]: ...


class KeepEvidence(Protocol):
    """After a failure that ends the work: its de-bag temp dir kept as evidence or removed (DebagSettings)."""

    def __call__(self, work_rid: str, version_key: str) -> None: ...


@dataclass(frozen=True)
class Stages:
    #: a message's work: fetched and de-bagged in one pass
    fetch_debag: FetchDebagStage
    #: a local zip (``finisher ingest``)
    debag: DebagStage
    sync: SyncStage
    #: where the de-bag stage puts works (``<works_dir>/<slot>/<RID>``): the worker resumes from what is there
    works_dir: Path
    #: when set, called once a work has failed for good (permanent, or unexpected for the last time)
    keep_evidence: KeepEvidence | None = None
    #: when set, run after the sync of each work, retried alone when it fails (``hook_phase.py``)
    hook: HookStage | None = None


def staging_slot(version_key: str) -> str:
    """The staging folder name of one object version: 16 hex digits of its key's SHA-256."""
    return hashlib.sha256(version_key.encode("utf-8")).hexdigest()[:16]
