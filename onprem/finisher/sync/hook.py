"""The post-sync hook: an operator's argument list run after each synced work (``{work_rid}``, ``{archive_path}``)."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onprem.finisher.errors import HookFailed

__all__ = ["HookResult", "run_post_sync_hook"]

logger = logging.getLogger(__name__)

_TAIL_LINES = 20


@dataclass(frozen=True)
class HookResult:
    """One hook run: the arguments after replacement, its exit code, its last output lines, how long it took."""

    work_rid: str
    args: list[str]
    exit_code: int
    output_tail: str
    duration: float


def run_post_sync_hook(hook: Sequence[str], work_rid: str, archive_path: Path, *, log_path: Path | None = None,
                       timeout_s: float | None = None) -> HookResult:
    """Run the hook's argument list with ``{work_rid}``/``{archive_path}`` replaced; HookFailed unless it exits 0."""
    args = [arg.replace("{work_rid}", work_rid).replace("{archive_path}", str(archive_path)) for arg in hook]
    started = time.monotonic()
    try:
        completed = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout_s,
                                   check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise HookFailed(work_rid, f"post-sync hook {args[0]!r} could not run: {err}") from err
    output = (completed.stdout + completed.stderr).strip()
    if log_path is not None:
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"post-sync hook {args} exited {completed.returncode}\n{output}\n")
    result = HookResult(work_rid=work_rid, args=args, exit_code=completed.returncode,
                        output_tail="\n".join(output.splitlines()[-_TAIL_LINES:]), duration=time.monotonic() - started)
    if completed.returncode != 0:
        raise HookFailed(work_rid, f"post-sync hook {args[0]!r} exited {completed.returncode}: "
                                   f"{result.output_tail[-300:] or 'no output'}")
    logger.info("post-sync hook %s ok", args[0], extra={"work_rid": work_rid})
    return result
