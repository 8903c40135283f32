"""The one place the worker binds to the stages: narrow protocols (fetch, de-bag, sync) and the real adapters.

Each object version (idempotency key) gets its own staging slot, ``<downloads>/<slot>/`` and ``<works>/<slot>/``
(``staging_slot``): two objects with the same RID in two buckets never share a download, a de-bag temp dir or a
staged work folder. An exception a stage lets through that a retry cannot fix (a name too long for the
filesystem, text that does not decode) becomes its named permanent error here (``named_failure``).

Stages are interrupted cooperatively: the worker's ``CancelToken`` is checked by the progress reporter a stage
calls between units of work (a part downloaded, a chunk extracted), which raises ``WorkInterrupted``. That is
not a FinisherError, so no stage mistakes it for a failure: partial downloads and de-bag journals stay
resumable.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from contract import RestoredWork
from onprem.finisher import faults
from onprem.finisher.progress import Progress
from onprem.finisher.stage_failures import naming_failures

if TYPE_CHECKING:
    from onprem.finisher.settings import Settings

INTERRUPT_REASONS = ("shutdown", "handoff", "lease_lost")


class WorkInterrupted(Exception):
    """The worker asked a stage to stop (shutdown, hand-on before the 12 h cap, lease lost)."""

    def __init__(self, work_rid: str, reason: str) -> None:
        self.work_rid, self.reason = work_rid, reason
        super().__init__(f"{work_rid}: interrupted ({reason})")


class CancelToken:
    """Set once by the worker (heartbeat, shutdown); checked by stages between units of work."""

    def __init__(self, work_rid: str) -> None:
        self.work_rid = work_rid
        self._event = threading.Event()
        self._reason: str | None = None
        self._lock = threading.Lock()

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                self._reason = reason
                self._event.set()

    @property
    def reason(self) -> str | None:
        return self._reason

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise WorkInterrupted(self.work_rid, self._reason or "shutdown")

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class TokenRegistry:
    """The cancel tokens of the works in flight (the worker cancels them all on shutdown)."""

    def __init__(self) -> None:
        self._tokens: set[CancelToken] = set()
        self._lock = threading.Lock()

    def add(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.add(token)

    def discard(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.discard(token)

    def cancel_all(self, reason: str) -> int:
        with self._lock:
            tokens = list(self._tokens)
        for token in tokens:
            token.cancel(reason)
        return len(tokens)


class CheckingProgress:
    """Forwards to an inner reporter, checks the cancel token and counts bytes (for metrics)."""

    def __init__(self, inner: Progress, cancel: CancelToken, checkpoint: str | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.inner, self.cancel, self.checkpoint, self.on_bytes = inner, cancel, checkpoint, on_bytes

    def start(self, total_bytes: int, total_files: int) -> None:
        self.cancel.check()
        self.inner.start(total_bytes, total_files)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        self.cancel.check()
        if self.checkpoint and nbytes > 0:
            faults.checkpoint(self.checkpoint, work_rid=self.cancel.work_rid)
        if self.on_bytes and nbytes:
            self.on_bytes(nbytes)
        self.inner.advance(nbytes, files)

    def finish(self) -> None:
        self.inner.finish()


@dataclass(frozen=True)
class StageContext:
    """What every stage call gets: the cancel token and a progress reporter per label."""

    cancel: CancelToken
    progress: Callable[[str], Progress]


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    resumed_parts: int = 0


@dataclass(frozen=True)
class StagedWork:
    work_rid: str
    path: Path


@dataclass(frozen=True)
class Synced:
    work_rid: str
    archive_path: Path | None
    details: dict[str, Any] = field(default_factory=dict)


class FetchStage(Protocol):
    def __call__(self, work: RestoredWork, ctx: StageContext) -> Fetched: ...


class DebagStage(Protocol):
    """``version_key`` names the object version (the worker passes the idempotency key): its staging slot."""

    def __call__(self, work_rid: str, zip_path: Path, version_key: str | None, ctx: StageContext, *,
                 expected_rids: frozenset[str] | None = None) -> list[StagedWork]:
        """``expected_rids``: the works the zip must hold, exactly (None: ``{work_rid}``, what a fetched key holds)."""
        ...


class SyncStage(Protocol):
    def __call__(self, staged: StagedWork, ctx: StageContext) -> Synced: ...


class FetchDebagStage(Protocol):
    """Download and de-bag overlapped (members extracted while the rest of the zip arrives)."""

    def __call__(self, work: RestoredWork, ctx: StageContext) -> tuple[Fetched, list[StagedWork]]: ...


class DiscardDownload(Protocol):
    def __call__(self, zip_path: Path) -> None: ...


class KeepEvidence(Protocol):
    """After a failure that ends the work: its de-bag temp dir kept as evidence or removed (DebagSettings)."""

    def __call__(self, work_rid: str, version_key: str) -> None: ...


@dataclass(frozen=True)
class Stages:
    fetch: FetchStage
    debag: DebagStage
    sync: SyncStage
    discard_download: DiscardDownload
    #: where the de-bag stage puts works (``<works_dir>/<slot>/<RID>``): the worker resumes from what is there
    works_dir: Path
    #: when set, used instead of fetch then de-bag for a work not yet downloaded
    fetch_debag: FetchDebagStage | None = None
    #: when set, called once a work has failed for good (permanent, or unexpected for the last time)
    keep_evidence: KeepEvidence | None = None


def staging_slot(version_key: str) -> str:
    """The staging folder name of one object version: 16 hex digits of its key's SHA-256."""
    return hashlib.sha256(version_key.encode("utf-8")).hexdigest()[:16]


# --- the real stages ---------------------------------------------------------------------------------
def _discard(zip_path: Path) -> None:
    from onprem.finisher.fetch import DONE_SUFFIX

    zip_path.unlink(missing_ok=True)
    zip_path.with_name(zip_path.name + DONE_SUFFIX).unlink(missing_ok=True)
    _remove_empty_slot(zip_path.parent)


def _remove_empty_slot(folder: Path) -> None:
    if len(folder.name) == 16:  # a staging slot (staging_slot); never the downloads or works folder itself
        with contextlib.suppress(OSError):  # not empty (another file of this version): the sweep takes it later
            folder.rmdir()


def real_stages(settings: Settings, s3_client_for: Callable[[str], Any]) -> Stages:
    """fetch.py, debag.py (or both overlapped: fetch_debag.py) and sync.py bound to the settings;
    ``s3_client_for(region)`` gives an S3 client. Each object version works in its own staging slot."""
    from onprem.finisher.debag import debag_archive, keep_or_remove_evidence, temp_dir_for
    from onprem.finisher.fetch import FetchRequest, fetch_object
    from onprem.finisher.fetch_debag import fetch_and_debag
    from onprem.finisher.sync import sync_work

    fetch_settings, debag_settings, sync_settings = (settings.fetch_settings(), settings.debag_settings(),
                                                      settings.sync_settings())
    _warm_s3_clients(s3_client_for, sorted({r.region for r in settings.environment.regions}))

    def evidence(work_rid: str, slot: str) -> None:
        keep_or_remove_evidence(temp_dir_for(settings.works_dir / slot, work_rid, slot), work_rid, debag_settings)

    def keep_evidence(work_rid: str, version_key: str) -> None:
        evidence(work_rid, staging_slot(version_key))

    def fetch(work: RestoredWork, ctx: StageContext) -> Fetched:
        request = FetchRequest(work.work_rid, work.bucket, work.key, work.size, work.etag, work.version_id)
        progress = CheckingProgress(ctx.progress("download"), ctx.cancel, faults.MID_DOWNLOAD)
        result = fetch_object(s3_client_for(work.region), request,
                              settings.downloads_dir / staging_slot(work.idempotency_key), fetch_settings, progress)
        return Fetched(result.path, result.size, result.parts_resumed)

    def debag(work_rid: str, zip_path: Path, version_key: str | None, ctx: StageContext, *,
              expected_rids: frozenset[str] | None = None) -> list[StagedWork]:
        slot = staging_slot(version_key or str(zip_path))
        progress = CheckingProgress(ctx.progress("de-bag"), ctx.cancel, faults.MID_EXTRACT)
        with naming_failures(work_rid, lambda: evidence(work_rid, slot)):
            result = debag_archive(zip_path, work_rid, settings.works_dir / slot, debag_settings, version_tag=slot,
                                   progress=progress, expected_rids=expected_rids)
        return [StagedWork(w.work_rid, w.path) for w in result.works]

    def fetch_debag(work: RestoredWork, ctx: StageContext) -> tuple[Fetched, list[StagedWork]]:
        request = FetchRequest(work.work_rid, work.bucket, work.key, work.size, work.etag, work.version_id)
        slot = staging_slot(work.idempotency_key)
        with naming_failures(work.work_rid, lambda: evidence(work.work_rid, slot)):
            result = fetch_and_debag(
                s3_client_for(work.region), request, settings.downloads_dir / slot, settings.works_dir / slot,
                fetch_settings, debag_settings,
                fetch_progress=CheckingProgress(ctx.progress("download"), ctx.cancel, faults.MID_DOWNLOAD),
                debag_progress=CheckingProgress(ctx.progress("de-bag"), ctx.cancel, faults.MID_EXTRACT),
                version_tag=slot)
        return (Fetched(result.fetch.path, result.fetch.size, result.fetch.parts_resumed),
                [StagedWork(w.work_rid, w.path) for w in result.debag.works])

    def sync(staged: StagedWork, ctx: StageContext) -> Synced:
        ctx.cancel.check()
        faults.checkpoint(faults.MID_SYNC, work_rid=staged.work_rid)
        result = sync_work(staged.path, staged.work_rid, sync_settings)
        _remove_empty_slot(staged.path.parent)
        return Synced(staged.work_rid, result.archive_path,
                      {"copy_mode": result.copy_mode, "log": str(result.log_path),
                       "seconds": round(result.duration, 3)})

    return Stages(fetch=fetch, debag=debag, sync=sync, discard_download=_discard, works_dir=settings.works_dir,
                  fetch_debag=fetch_debag if settings.fetch_debag_overlap else None, keep_evidence=keep_evidence)


def _warm_s3_clients(s3_client_for: Callable[[str], Any], regions: list[str]) -> None:
    """Create each region's S3 client now, on a side thread, not inside the first work's fetch (~0.2 s each)."""

    def warm() -> None:
        for region in regions:
            with contextlib.suppress(Exception):  # the fetch makes (and reports) its own client on first use
                s3_client_for(region)

    threading.Thread(target=warm, name="warm-s3-clients", daemon=True).start()


def load_stages(settings: Settings, s3_client_for: Callable[[str], Any]) -> Stages:
    """The stages named by ``settings.stages_factory`` (``module:function``)."""
    module_name, _, function_name = settings.stages_factory.partition(":")
    factory = getattr(importlib.import_module(module_name), function_name or "real_stages")
    return factory(settings, s3_client_for)


def key_name(key: str) -> str:
    return PurePosixPath(key).name
