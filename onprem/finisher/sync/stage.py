"""The sync stage: run ``bin/syncOneWork.sh`` on a staged work, then the optional post-sync hook.

``sync_work`` checks the work's RID and the archive root, merges the work's sync options (defaults ← site-sync.yml
← the allowed keys of config/sync.yml), builds the script's argument list (always ``-A -a <archive_root>``: the
archive copy becomes exactly the staged work) and environment (audit options, job date/time and per-run log
paths), streams the script's output into the work's log file and the logger, checks the archive copy against the
bag's manifests (sync_verify.py), and only then removes the staging copy.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from contract.keys import archive_relpath_for_rid, control_characters, is_rid
from onprem.finisher.errors import (
    ArchiveUnavailable,
    HookFailed,
    InterruptReason,
    SyncFailed,
    SyncRefused,
    WorkInterrupted,
    WorkRidRefused,
)
from onprem.finisher.sync.group import CancelSignal, OwnedGroup
from onprem.finisher.sync.hook import HookResult, run_post_sync_hook
from onprem.finisher.sync.options import SyncOptions, load_sync_options
from onprem.finisher.sync.verify import verify_archive_copy

__all__ = [
    "DEFAULT_SCRIPT",
    "HookResult",
    "SyncResult",
    "SyncSettings",
    "build_command",
    "build_environment",
    "job_environment",
    "run_post_sync_hook",
    "sync_work",
]

logger = logging.getLogger(__name__)

DEFAULT_SCRIPT = Path(__file__).resolve().parents[3] / "bin" / "syncOneWork.sh"
CopyMode = Literal["link", "rename", "copy"]
#: what each exit code of syncOneWork.sh means (its -h lists the same)
EXIT_MEANINGS = {
    2: "usage error", 3: "not a work directory", 4: "audit before the sync failed", 5: "archive sync failed",
    6: "-A refused an empty source or a non-work", 7: "audit of the archive copy failed", 8: "web copy failed",
    9: "success list not written", 10: "another sync of this work is running", 11: "the archive root does not exist",
    130: "interrupted, archive left as it was", 143: "terminated, archive left as it was",
}
#: exits a retry cannot fix: the script refused the work itself
PERMANENT_EXITS = frozenset({2, 3, 6})
#: the archive root is missing (not mounted): retried, with its own cause
EXIT_NO_ARCHIVE = 11
_COPY_MODE_RE = re.compile(r": archive: copy_mode=(link|rename|copy) path=(.+)$")
#: the script's line when its marker says the archive copy is already this staged work (a restart after a stop)
_ALREADY_RE = re.compile(r": archive: already synced \(marker [0-9a-f]+\) path=(.+)$")
_TAIL_LINES = 20


class SyncSettings(BaseModel):
    """How the finisher runs the sync stage; embedded in the finisher's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the archive's root; it must exist: never created (an unmounted archive mount would fill the local disk)
    archive_root: Path
    log_dir: Path
    script_path: Path = DEFAULT_SCRIPT
    web_parent: str | None = None
    #: works synced with every requested step; -w needs one, so log_dir/synced-works.txt when unset
    success_list: Path | None = None
    #: folder holding site-sync.yml (None: defaults, then the allowed keys of the work's config/sync.yml)
    config_dir: Path | None = None
    #: argument list run after each synced work; ``{work_rid}`` and ``{archive_path}`` are replaced
    post_sync_hook: list[str] | None = None
    keep_staging_on_failure: bool = True
    audit_required: bool = False
    timeout_s: float | None = None
    hook_timeout_s: float | None = 600
    #: after a stop, how long the script's process group has between SIGTERM (its trap rolls the archive back)
    #: and SIGKILL; the worker's shutdown waits this long, plus a margin, for the works it interrupted
    terminate_timeout_s: float = 10.0
    #: how long the script waits for the work's lock (an earlier run's sync, orphaned by a kill -9, finishing)
    lock_wait_s: float = 900.0


@dataclass(frozen=True)
class SyncResult:
    work_rid: str
    exit_code: int
    log_path: Path
    archive_path: Path | None
    copy_mode: CopyMode | None
    duration: float
    staging_removed: bool = False
    hook: HookResult | None = None
    #: files of the archive copy checked against the staged work and its manifests, and how many were re-hashed
    verified_files: int = 0
    rehashed_files: int = 0
    #: the archive copy was already this staged work (the script's marker): recorded as synced, nothing copied
    already_synced: bool = False


def job_environment(work_rid: str, log_dir: Path, now: datetime) -> dict[str, str]:
    """The job date/time variables and per-run log paths the archive's scripts expect."""
    job_date, job_time = now.strftime("%Y-%m-%d"), now.strftime("%H-%M-%S")
    job_date_time = f"{job_date}_{job_time}"
    sync_dir = log_dir / "sync" / job_date_time
    return {
        "jobDateTime": job_date_time,
        "jobDate": job_date,
        "jobTime": job_time,
        "syncLogDateTimeDir": str(sync_dir),
        "syncLogDateTimeFile": str(sync_dir / f"{work_rid}.log"),
        "syncLogTempDir": str(sync_dir / "tmp"),
        "auditToolLogDateTimeDir": str(log_dir / "audit" / job_date_time),
    }


def build_command(script: Path, work_dir: Path, archive_root: Path, options: SyncOptions,
                  success_list: Path) -> list[str]:
    """The script's argument list (no shell involved): always ``-A -a archive_root`` (the archive copy becomes
    exactly the staged work, so it equals the new manifest), then the web options."""
    args = [str(script), "-A"]
    if options.sync.replace and options.sync.web:
        args.append("-W")
    args += ["-a", str(archive_root)]
    if options.sync.web:
        args += ["-w", options.sync.web]
    args += ["-s", str(success_list), str(work_dir)]
    return args


def build_environment(
    options: SyncOptions, job_env: dict[str, str], *, audit_required: bool, base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The script's environment: ``base`` (default os.environ) plus audit options, job variables and switches."""
    env = dict(os.environ if base is None else base)
    env.update(job_env)
    env["LOCAL_AUDIT_OPTIONS"] = " ".join(options.audit.pre)
    env["REPO_AUDIT_OPTIONS"] = " ".join(options.audit.post)
    env["NO_REFRESH_WEB"] = "No" if options.sync.update_web else "Yes"
    env["AUDIT_REQUIRED"] = "1" if audit_required else "0"
    env["SYNC_PYTHON"] = sys.executable
    return env


@dataclass
class _ScriptRun:
    exit_code: int = -1
    tail: list[str] = field(default_factory=list)
    copy_mode_line: re.Match[str] | None = None
    #: the script found the archive copy already identical (its marker, under the work's lock): nothing synced
    already_synced: bool = False
    #: why the finisher stopped the script's group ("cancelled", "timed out"), None when it ended by itself
    stopped_because: str | None = None


def _stream(args: list[str], env: dict[str, str], log_path: Path, work_rid: str, settings: SyncSettings,
            cancel: CancelSignal | None) -> _ScriptRun:
    """Run ``args`` in a process group the finisher owns (sync/group.py), copying each output line to
    ``log_path`` and the logger; returns once the script and every child of it are gone."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run = _ScriptRun()
    with log_path.open("a", encoding="utf-8") as log:
        group = OwnedGroup(args, env=env, cancel=cancel, terminate_timeout_s=settings.terminate_timeout_s,
                           timeout_s=settings.timeout_s, label=f"{work_rid}: syncOneWork.sh")
        try:
            assert group.proc.stdout is not None
            for raw_line in group.proc.stdout:
                log.write(raw_line)
                log.flush()
                line = raw_line.rstrip("\n")
                run.tail = [*run.tail[-(_TAIL_LINES - 1):], line]
                run.copy_mode_line = _COPY_MODE_RE.search(line) or run.copy_mode_line
                run.already_synced = run.already_synced or _ALREADY_RE.search(line) is not None
                level = logging.WARNING if ": ERROR: " in line else logging.DEBUG
                logger.log(level, line, extra={"work_rid": work_rid})
        except BaseException:
            group.kill_now()
            raise
        run.exit_code = group.wait()
        run.stopped_because = group.stopped_because
        if run.stopped_because:
            log.write(f"finisher: syncOneWork.sh {run.stopped_because}: its process group stopped, exit "
                      f"{run.exit_code}\n")
    return run


def _sync_failed(work_rid: str, run: _ScriptRun, log_path: Path,
                 timeout_s: float | None) -> SyncFailed | SyncRefused | ArchiveUnavailable:
    exit_code = run.exit_code
    meaning = EXIT_MEANINGS.get(exit_code, "killed by a signal" if exit_code < 0 else "unexpected exit code")
    if run.stopped_because == "timed out":
        meaning = f"timed out after {timeout_s:g} s, terminated"
    errors = [line for line in run.tail if ": ERROR: " in line]
    detail = f": {errors[-1]}" if errors else ""
    message = f"syncOneWork.sh exited {exit_code} ({meaning}){detail}; log: {log_path}"
    err: SyncFailed | SyncRefused | ArchiveUnavailable
    if exit_code in PERMANENT_EXITS:
        err = SyncRefused(work_rid, message)
    elif exit_code == EXIT_NO_ARCHIVE:
        err = ArchiveUnavailable(work_rid, message)
    else:
        err = SyncFailed(work_rid, message)
    err.exit_code, err.log_path = exit_code, log_path
    return err


def sync_work(work_dir: Path, work_rid: str, settings: SyncSettings, *, now: datetime | None = None,
              run_hook: bool = True, cancel: CancelSignal | None = None) -> SyncResult:
    """Sync the staged work ``work_dir`` (named after ``work_rid``) into ``archive_root/Archive{n}/{NN}/{RID}``.

    Returns only when the archive copy is at that path and equals the staged work and its bag's manifests
    (``ArchiveCopyMismatch``/``ArchiveCopyMissing`` otherwise, staging kept); then the staging copy is removed
    and, when configured, the post-sync hook runs; a hook failure raises HookFailed carrying ``sync_result``
    (retry it alone with ``run_post_sync_hook``). WorkRidRefused when the RID is not whole or the folder is not
    named after it; ArchiveUnavailable (retryable) when the archive root does not exist; a non-zero exit raises
    SyncFailed or SyncRefused (``exit_code``, ``log_path``) and the staging copy stays unless
    keep_staging_on_failure is off. SyncConfigInvalid when a sync options file is invalid.

    The script runs in a process group the finisher owns: once ``cancel`` is set (a shutdown past its grace), the
    group gets SIGTERM (the script's trap rolls a half-synced target back), SIGKILL after
    ``terminate_timeout_s``, and this returns only when no process of it is left, raising ``WorkInterrupted``
    (``cancel.check()``) with the staging copy kept for the restart. A script that finished anyway counts as done.
    ``already_synced`` in the result: the script's marker said the archive copy is this staged work (the sync
    of a run stopped or killed after the copy was in place), so nothing was copied and the success list names the
    work once (the script appends the line only when the killed run's pending marker shows it was not written).
    """
    _check_work_rid(work_dir, work_rid)
    _check_archive_root(settings.archive_root, work_rid)
    options = load_sync_options(work_dir, work_rid, config_dir=settings.config_dir, web_parent=settings.web_parent)
    job_env = job_environment(work_rid, settings.log_dir, now or datetime.now(UTC))
    log_path = Path(job_env["syncLogDateTimeFile"])
    success_list = settings.success_list or settings.log_dir / "synced-works.txt"
    success_list.parent.mkdir(parents=True, exist_ok=True)
    args = build_command(settings.script_path, work_dir, settings.archive_root, options, success_list)
    env = build_environment(options, job_env, audit_required=settings.audit_required)
    env["SYNC_LOCK_WAIT"] = f"{settings.lock_wait_s:g}"
    logger.info("syncing %s: %s", work_rid, " ".join(args[1:]), extra={"work_rid": work_rid})
    started = time.monotonic()
    run = _stream(args, env, log_path, work_rid, settings, cancel)
    duration = time.monotonic() - started
    if run.exit_code != 0 and run.stopped_because == "cancelled" and cancel is not None:
        logger.warning("%s: sync stopped (exit %d): the archive is as it was, the staging copy kept", work_rid,
                       run.exit_code, extra={"work_rid": work_rid})
        cancel.check()
        raise WorkInterrupted(work_rid, InterruptReason.SHUTDOWN)
    if run.exit_code != 0:
        if not settings.keep_staging_on_failure:
            shutil.rmtree(work_dir, ignore_errors=True)
        raise _sync_failed(work_rid, run, log_path, settings.timeout_s)
    archive_path = settings.archive_root / archive_relpath_for_rid(work_rid)
    copy_mode = run.copy_mode_line.group(1) if run.copy_mode_line else None
    if run.copy_mode_line and Path(run.copy_mode_line.group(2)) != archive_path.resolve():
        logger.warning("%s: the script reports %s, the work's archive path is %s", work_rid,
                       run.copy_mode_line.group(2), archive_path, extra={"work_rid": work_rid})
    # before the staging copy goes: it is the evidence, and the source of a retry
    check = verify_archive_copy(work_rid, work_dir, archive_path)
    shutil.rmtree(work_dir)
    result = SyncResult(work_rid=work_rid, exit_code=0, log_path=log_path, archive_path=archive_path,
                        copy_mode=copy_mode, duration=duration, staging_removed=True,  # type: ignore[arg-type]
                        verified_files=check.files, rehashed_files=check.rehashed, already_synced=run.already_synced)
    logger.info("synced %s in %.1f s (copy_mode=%s%s) to %s: %d file(s) verified, %d re-hashed", work_rid, duration,
                copy_mode, ", already in place" if run.already_synced else "", archive_path, check.files,
                check.rehashed, extra={"work_rid": work_rid})
    if run_hook and settings.post_sync_hook and archive_path is not None:
        try:
            hook = run_post_sync_hook(settings.post_sync_hook, work_rid, archive_path, log_path=log_path,
                                      timeout_s=settings.hook_timeout_s, cancel=cancel,
                                      terminate_timeout_s=settings.terminate_timeout_s)
        except HookFailed as err:
            err.sync_result = result
            raise
        result = replace(result, hook=hook)
    return result


def _check_work_rid(work_dir: Path, work_rid: str) -> None:
    """The RID matched whole (contract.keys.is_rid) and naming the folder: the script would sync another one."""
    if not is_rid(work_rid):
        controls = control_characters(work_rid) if isinstance(work_rid, str) else []
        detail = f" (control characters {', '.join(controls)})" if controls else ""
        raise WorkRidRefused(repr(work_rid), f"not a work RID{detail}: {str(work_dir)!r} not synced")
    if work_dir.name != work_rid:
        raise WorkRidRefused(work_rid, f"the staged work folder must be named after the work, got {str(work_dir)!r}")


def _check_archive_root(archive_root: Path, work_rid: str) -> None:
    if not archive_root.is_dir():
        err = ArchiveUnavailable(work_rid, f"archive root {archive_root} does not exist (not mounted?): never "
                                           "created, retried once it is there")
        logger.error("%s", err, extra={"work_rid": work_rid, "cause": err.cause})
        raise err
