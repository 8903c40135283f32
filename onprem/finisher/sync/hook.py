"""The post-sync hook: an operator's argument list run after each synced work (``{work_rid}``, ``{archive_path}``).

Its own phase (``work/hook_phase.py``): a failing hook is retried alone, the work stays synced. It runs in a
process group the finisher owns (``sync/group.py``): a stop ends the hook and every child it started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onprem.finisher.errors import HookFailed, InterruptReason, WorkInterrupted
from onprem.finisher.sync.group import CancelSignal, OwnedGroup

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
                       timeout_s: float | None = None, cancel: CancelSignal | None = None,
                       terminate_timeout_s: float = 10.0) -> HookResult:
    """Run the hook's argument list with ``{work_rid}``/``{archive_path}`` replaced; HookFailed unless it exits 0
    (or when it cannot start, or runs past ``timeout_s``); WorkInterrupted once ``cancel`` stopped it."""
    args = [arg.replace("{work_rid}", work_rid).replace("{archive_path}", str(archive_path)) for arg in hook]
    started = time.monotonic()
    try:
        group = OwnedGroup(args, cancel=cancel, terminate_timeout_s=terminate_timeout_s, timeout_s=timeout_s,
                           label=f"{work_rid}: post-sync hook")
    except OSError as err:
        raise HookFailed(work_rid, f"post-sync hook {args[0]!r} could not run: {err}") from err
    assert group.proc.stdout is not None
    try:
        output = group.proc.stdout.read().strip()
    except BaseException:
        group.kill_now()
        raise
    exit_code = group.wait()
    if log_path is not None:
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"post-sync hook {args} exited {exit_code}\n{output}\n")
    if group.stopped_because == "cancelled" and cancel is not None:
        cancel.check()
        raise WorkInterrupted(work_rid, InterruptReason.SHUTDOWN)
    result = HookResult(work_rid=work_rid, args=args, exit_code=exit_code,
                        output_tail="\n".join(output.splitlines()[-_TAIL_LINES:]), duration=time.monotonic() - started)
    if group.stopped_because == "timed out":
        raise HookFailed(work_rid, f"post-sync hook {args[0]!r} could not run: timed out after {timeout_s:g} s")
    if exit_code != 0:
        raise HookFailed(work_rid, f"post-sync hook {args[0]!r} exited {exit_code}: "
                                   f"{result.output_tail[-300:] or 'no output'}")
    logger.info("post-sync hook %s ok", args[0], extra={"work_rid": work_rid})
    return result
