"""The composition of the real stages: fetch + de-bag (one pass over the object's ranges), the de-bag of a local
zip (``finisher ingest``) and sync, bound to the settings.

The one module that knows every stage package; the CLI builds the worker's stages here (``real_stages``: a test
hands a finisher process its own through ``cli.app.main(stages_for=…)``). An exception a stage lets
through that a retry cannot fix (a name too long for the filesystem, text that does not decode) becomes its named
permanent error here (``naming_failures``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract import RestoredWork
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import StagedWork
from onprem.finisher.debag.staging import keep_or_remove_evidence, open_works_dir, temp_dir_for
from onprem.finisher.fetch.request import FetchRequest
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, fetch_and_debag
from onprem.finisher.sync.stage import run_post_sync_hook, sync_work
from onprem.finisher.work import faults
from onprem.finisher.work.cancel import CheckingProgress
from onprem.finisher.work.failures import naming_failures
from onprem.finisher.work.settings import Settings
from onprem.finisher.work.stages import Fetched, StageContext, Stages, Synced, staging_slot

logger = logging.getLogger(__name__)


def _remove_empty_slot(folder: Path) -> None:
    if len(folder.name) == 16:  # a staging slot (staging_slot); never the works folder itself
        with contextlib.suppress(OSError):  # not empty (another file of this version): the sweep takes it later
            folder.rmdir()


def real_stages(settings: Settings, s3_client_for: Callable[[str], Any]) -> Stages:
    """The fetch + de-bag (one pass: ``fetch_debag.segmented``), local de-bag and sync stages bound to the
    settings; ``s3_client_for(region)`` gives an S3 client. Each object version works in its own staging slot."""
    fetch_settings, debag_settings, sync_settings = settings.fetch, settings.debag, settings.sync
    _warm_s3_clients(s3_client_for, sorted({r.region for r in settings.environment.regions}))

    def evidence(work_rid: str, slot: str) -> None:
        keep_or_remove_evidence(temp_dir_for(settings.works_dir / slot, work_rid, slot), work_rid, debag_settings)

    def keep_evidence(work_rid: str, version_key: str) -> None:
        evidence(work_rid, staging_slot(version_key))

    def debag(work_rid: str, zip_path: Path, version_key: str | None, ctx: StageContext, *,
              expected_rids: frozenset[str] | None = None) -> list[StagedWork]:
        open_works_dir(settings.works_dir, settings.archive_root, work_rid)  # on the archive: never creates its root
        slot = staging_slot(version_key or str(zip_path))
        progress = CheckingProgress(ctx.progress("de-bag"), ctx.cancel, faults.MID_EXTRACT)
        with naming_failures(work_rid, lambda: evidence(work_rid, slot)):
            result = debag_archive(zip_path, work_rid, settings.works_dir / slot, debag_settings, version_tag=slot,
                                   progress=progress, expected_rids=expected_rids)
        return result.works

    def fetch_debag(work: RestoredWork, ctx: StageContext) -> tuple[Fetched, list[StagedWork]]:
        request = FetchRequest.of(work, ctx.head)  # pinned to the restore check's HEAD
        open_works_dir(settings.works_dir, settings.archive_root, work.work_rid)
        slot = staging_slot(work.idempotency_key)
        with naming_failures(work.work_rid, lambda: evidence(work.work_rid, slot)):
            result = fetch_and_debag(s3_client_for(work.region), FetchDebagJob(
                request, settings.works_dir / slot, fetch_settings, debag_settings, version_tag=slot,
                fetch_progress=CheckingProgress(ctx.progress("download"), ctx.cancel, faults.MID_DOWNLOAD),
                debag_progress=CheckingProgress(ctx.progress("de-bag"), ctx.cancel, faults.MID_EXTRACT),
                before_place=lambda: faults.checkpoint(faults.BEFORE_PLACE, work_rid=work.work_rid)))
        fetch = result.fetch  # the zip is never written: what was read is named by its key, nothing on disk
        return (Fetched(work.key, fetch.size, fetch.segments_resumed, fetch.checksum_verified, fetch.checksum_note),
                result.debag.works)

    def sync(staged: StagedWork, ctx: StageContext) -> Synced:
        ctx.cancel.check()
        faults.checkpoint(faults.MID_SYNC, work_rid=staged.work_rid)
        # the hook is its own phase (work/hook_phase.py): a failing hook never makes the work sync again
        result = sync_work(staged.path, staged.work_rid, sync_settings, run_hook=False, cancel=ctx.cancel)
        _remove_empty_slot(staged.path.parent)
        details: dict[str, Any] = {"copy_mode": result.copy_mode, "log": str(result.log_path),
                                   "seconds": round(result.duration, 3)}
        if result.already_synced:
            details["already_synced"] = True
        return Synced(staged.work_rid, result.archive_path, details)

    def hook(work_rid: str, archive_path: Path, log_path: Path | None, ctx: StageContext) -> None:
        assert sync_settings.post_sync_hook is not None
        run_post_sync_hook(sync_settings.post_sync_hook, work_rid, archive_path, log_path=log_path,
                           timeout_s=sync_settings.hook_timeout_s, cancel=ctx.cancel,
                           terminate_timeout_s=sync_settings.terminate_timeout_s)

    return Stages(fetch_debag=fetch_debag, debag=debag, sync=sync, works_dir=settings.works_dir,
                  keep_evidence=keep_evidence, hook=hook if sync_settings.post_sync_hook else None)


def _warm_s3_clients(s3_client_for: Callable[[str], Any], regions: list[str]) -> None:
    """Create each region's S3 client now, on a side thread, not inside the first work's fetch (~0.2 s each)."""

    def warm() -> None:
        for region in regions:
            with contextlib.suppress(Exception):  # the fetch makes (and reports) its own client on first use
                s3_client_for(region)

    threading.Thread(target=warm, name="warm-s3-clients", daemon=True).start()
