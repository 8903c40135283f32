"""De-bag: extract a downloaded BDRC zip into the staging layout with BagIt fixity, reading the payload once.

Reads from a file on disk (not a stream): the zip's central directory is at its end, a local file can be read
by many threads at once, and a crash resumes from the members already verified. The file may still be
arriving (``fetch_debag.fetch_and_debag``): a ``MemberSource`` says when each member's bytes are there.

Flow: central directory → ``check_archive`` (one guard per member) → ``plan_works`` (bags or plain work
folders; exactly the expected works: ``{work_rid}`` unless the caller names several) → ``extract_members``:
tag files extracted and parsed by bagit while payload members are extracted in parallel, each hashed with
every manifest algorithm while it is written → manifests, tag manifests, Payload-Oxum and completeness
checked against those digests → the source settles → one flush of the filesystem (``DebagSettings.fsync``) →
each ``<tmp>/<RID>`` renamed to ``<staging>/<RID>``. Nothing reaches the final layout unless every work in the
zip verified.

Crash safety without a wait per file: the member journal's lines and the extracted files are not fsynced one by
one (a killed process keeps the page cache); a member taken from the journal after a restart is hashed again
from disk and redone unless it still matches (a power loss may have kept the line and lost the bytes).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from onprem.finisher.debag.budget import check_entry_count
from onprem.finisher.debag.extract import MemberExtractor
from onprem.finisher.debag.journal import VerifiedJournal
from onprem.finisher.debag.layout import plain_zip_allowed, plan_works
from onprem.finisher.debag.manifest import load_work_manifest
from onprem.finisher.debag.model import (
    DebagResult,
    DebagSettings,
    Extractor,
    SafeMember,
    StagedWork,
    WorkPlan,
    zip_mtime,
)
from onprem.finisher.debag.safety import check_archive
from onprem.finisher.debag.schedule import extract_members
from onprem.finisher.debag.source import CompleteZip, MemberSource
from onprem.finisher.debag.verify import verify_work
from onprem.finisher.durability import sync_filesystem
from onprem.finisher.errors import (
    Cleanup,
    CorruptArchive,
    FinisherError,
    InsufficientSpace,
    NonUtf8MemberName,
    SourceUnavailable,
)
from onprem.finisher.progress import NullProgress, Progress

__all__ = ["DebagResult", "DebagSettings", "StagedWork", "clean_up", "debag_archive", "debag_members",
           "keep_or_remove_evidence", "read_central_directory", "temp_dir_for"]

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


def debag_archive(
    zip_path: Path, work_rid: str, staging_dir: Path, settings: DebagSettings | None = None, *,
    version_tag: str | None = None, progress: Progress | None = None, expected_rids: Iterable[str] | None = None,
) -> DebagResult:
    """Extract and verify every work of ``zip_path`` into ``<staging_dir>/<RID>/``; the zip is never modified.

    ``expected_rids``: the works the zip must hold, exactly (default ``{work_rid}``, what a fetched key holds;
    a hand-delivered zip of several works names them all). A zip named ``*.bag.zip`` must hold bags.
    Raises a PermanentError subclass (UnsafeArchive, CorruptArchive, BagInvalid, ChecksumMismatch,
    UnexpectedWork …) naming the work and the file; then nothing is left in the final layout and the temp dir
    is kept as evidence (``.debag-failed-…``) or removed, per ``settings.keep_evidence``.
    """
    settings = settings or DebagSettings()
    members = read_central_directory(zip_path, work_rid, settings)
    job = DebagJob(work_rid, staging_dir, settings, version_tag,
                   frozenset(expected_rids) if expected_rids is not None else None, progress)
    return debag_members(CompleteZip(zip_path), members, job)


def read_central_directory(zip_path: Path, work_rid: str, settings: DebagSettings) -> list[SafeMember]:
    """The zip's members, each through the safety guard (``check_archive``); CorruptArchive when unreadable."""
    try:
        check_entry_count(zip_path, work_rid, settings)  # before zipfile holds one object per entry
        with zipfile.ZipFile(zip_path) as zf:
            return check_archive(zf, work_rid, settings)
    except UnicodeDecodeError as err:  # zipfile decodes a bit-11 name strictly while reading the directory
        raise NonUtf8MemberName(work_rid, f"{zip_path.name}: a member name flagged UTF-8 (bit 11) is not UTF-8: "
                                          f"{err.object[:120]!r}") from err
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CorruptArchive(work_rid, f"unreadable zip {zip_path.name}: {err}") from err


def debag_members(source: MemberSource, members: list[SafeMember], job: DebagJob, *, archive: Path | None = None,
                  extractor: Extractor | None = None) -> DebagResult:
    """``debag_archive`` on members already read and guarded, read from ``source`` as they become readable.

    ``archive`` is the zip named in the result (default ``source.path``); its name decides whether the zip
    must hold bags (``*.bag.zip``). ``extractor`` puts each member in place (default: read from
    ``source.path`` with zipfile; ``stream_debag`` moves members it already wrote).
    A ``SourceUnavailable`` from the source is re-raised as its cause, with the temp dir and its journal left
    for a resume.
    """
    work_rid, staging_dir, settings, expected_rids = job.work_rid, job.staging_dir, job.settings, job.expected_rids
    progress = job.progress or NullProgress()
    temp_dir = temp_dir_for(staging_dir, work_rid, job.version_tag)
    zip_name = (archive or source.path).name
    try:
        plans = plan_works(members, work_rid, allow_plain_zip=plain_zip_allowed(zip_name, settings.allow_plain_zip),
                           expected_rids=expected_rids, zip_name=zip_name)
    except FinisherError as err:
        if extractor is not None:
            extractor.close()  # a stream de-bag's members are written already: kept as evidence below
        clean_up(err, temp_dir, work_rid, settings)
        raise
    temp_dir.mkdir(parents=True, exist_ok=True)
    journal = VerifiedJournal(temp_dir / JOURNAL_NAME)
    extractor = extractor or MemberExtractor(source.path, work_rid, settings, progress)
    try:
        extracted = extract_members(plans, temp_dir, extractor, source, journal, settings, progress,
                                    load_work_manifest)
        manifests, digests, resumed = extracted.manifests, extracted.digests, extracted.resumed
        works = [verify_work(plan, manifests.get(plan.work_rid), digests, temp_dir, staging_dir) for plan in plans]
        source.settle()
        if settings.fsync:
            sync_filesystem(temp_dir)  # one flush of every extracted file before anything is placed
        _place(plans, temp_dir, staging_dir)
    except SourceUnavailable as err:
        raise err.cause from None
    except FinisherError as err:
        journal.close()
        extractor.close()
        clean_up(err, temp_dir, work_rid, settings)
        raise
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise InsufficientSpace(work_rid, f"disk full while extracting into {temp_dir}") from err
        raise
    finally:
        journal.close()
        extractor.close()
    shutil.rmtree(temp_dir, ignore_errors=True)
    progress.finish()
    for work in works:
        logger.info("%s: de-bagged %d files, %d bytes (%s)", work.work_rid, work.files, work.bytes,
                    "fixity verified: " + ",".join(work.algorithms) if work.fixity_checked
                    else "no fixity available", extra={"work_rid": work.work_rid})
    return DebagResult(archive=archive or source.path, works=works, members_resumed=resumed)


def _place(plans: list[WorkPlan], temp_dir: Path, staging_dir: Path) -> None:
    """Create the zip's folders with their times, then rename each ``<tmp>/<RID>`` to ``<staging>/<RID>``."""
    for plan in plans:
        for member, rel in sorted(plan.dirs, key=lambda d: -len(d[1].parts)):
            folder = temp_dir / plan.work_rid / rel
            folder.mkdir(parents=True, exist_ok=True)  # empty folders of the zip exist in staging too
            mtime = zip_mtime(member.info)
            os.utime(folder, (mtime, mtime))
    for plan in plans:
        final = staging_dir / plan.work_rid
        if final.exists():
            logger.warning("%s: replacing an earlier staging copy at %s", plan.work_rid, final,
                           extra={"work_rid": plan.work_rid})
            shutil.rmtree(final)
        os.rename(temp_dir / plan.work_rid, final)


def clean_up(err: BaseException, temp_dir: Path, work_rid: str, settings: DebagSettings, *,
             discard_download: Callable[[], None] | None = None) -> None:
    """Leave on disk what ``err``'s class says (``FinisherError.cleanup``): RESUME keeps the temp dir and the
    download; EVIDENCE keeps the temp dir as evidence (``keep_or_remove_evidence``); DISCARD does that and calls
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
