"""The work's temp dir in staging, what a failure leaves of it, and placing the verified works.

Members are written at their final paths inside ``<staging>/.debag-<RID>-<version>/<RID>/``; once every work of
the zip verified (and the filesystem was flushed once), each ``<tmp>/<RID>`` is renamed to ``<staging>/<RID>``:
one rename per work, never one per member.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onprem.finisher.debag.model import DebagSettings, WorkPlan, zip_mtime
from onprem.finisher.errors import Cleanup, FinisherError
from onprem.finisher.progress import Progress

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".debag-"
FAILED_PREFIX = ".debag-failed-"
JOURNAL_NAME = ".verified.jsonl"


@dataclass(frozen=True)
class DebagJob:
    """One de-bag: the work its zip was fetched for, the staging folder its works go to, and how."""

    work_rid: str
    staging_dir: Path
    settings: DebagSettings = field(default_factory=lambda: DebagSettings())
    #: names the temp dir (the object version): a de-bag started again finds its journal there
    version_tag: str | None = None
    #: the works the zip must hold, exactly (None: ``{work_rid}``, what a fetched key holds)
    expected_rids: frozenset[str] | None = None
    progress: Progress | None = None


def temp_dir_for(staging_dir: Path, work_rid: str, version_tag: str | None) -> Path:
    """The temp dir of one work and object version: ``<staging>/.debag-<RID>-<version>``."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "", version_tag or "")[:40] or "unversioned"
    return staging_dir / f"{TEMP_PREFIX}{work_rid}-{tag}"


def place_works(plans: list[WorkPlan], temp_dir: Path, staging_dir: Path) -> None:
    """Create the zip's folders with their times, then rename each ``<tmp>/<RID>`` to ``<staging>/<RID>``."""
    for plan in plans:
        for member, rel in sorted(plan.dirs, key=lambda d: -len(d[1].parts)):
            folder = temp_dir / plan.work_rid / rel
            folder.mkdir(parents=True, exist_ok=True)  # empty folders of the zip exist in staging too
            mtime = zip_mtime(member.info)
            os.utime(folder, (mtime, mtime))
    for plan in plans:
        (temp_dir / plan.work_rid).mkdir(parents=True, exist_ok=True)  # a work of empty folders only
        final = staging_dir / plan.work_rid
        if final.exists():
            logger.warning("%s: replacing an earlier staging copy at %s", plan.work_rid, final,
                           extra={"work_rid": plan.work_rid})
            shutil.rmtree(final)
        os.rename(temp_dir / plan.work_rid, final)


def clean_up(err: BaseException, temp_dir: Path, work_rid: str, settings: DebagSettings, *,
             discard_download: Callable[[], None] | None = None) -> None:
    """Leave on disk what ``err``'s class says (``FinisherError.cleanup``): RESUME keeps the temp dir and its
    journal; EVIDENCE keeps the temp dir as evidence (``keep_or_remove_evidence``); DISCARD does that and calls
    ``discard_download``; PURGE removes the temp dir and calls ``discard_download``. Anything else (a control-flow
    signal, a kill, a bug) is RESUME: ``work.failures.naming_failures`` keeps the evidence of what it names."""
    policy = err.cleanup if isinstance(err, FinisherError) else Cleanup.RESUME
    if policy is Cleanup.PURGE:
        shutil.rmtree(temp_dir, ignore_errors=True)
    elif policy in (Cleanup.EVIDENCE, Cleanup.DISCARD):
        keep_or_remove_evidence(temp_dir, work_rid, settings)
    if policy.removes_download and discard_download is not None:
        discard_download()


def keep_or_remove_evidence(temp_dir: Path, work_rid: str, settings: DebagSettings) -> None:
    """The temp dir renamed ``.debag-failed-<RID>-<version>-<epoch>`` (never swept), or removed when
    ``settings.keep_evidence`` is off."""
    if not temp_dir.exists():
        return
    if not settings.keep_evidence:
        shutil.rmtree(temp_dir, ignore_errors=True)
        return
    evidence = temp_dir.with_name(f"{FAILED_PREFIX}{temp_dir.name.removeprefix(TEMP_PREFIX)}-{int(time.time())}")
    os.rename(temp_dir, evidence)
    logger.warning("%s: de-bag failed; evidence kept in %s", work_rid, evidence, extra={"work_rid": work_rid})
