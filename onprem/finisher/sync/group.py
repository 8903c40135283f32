"""A child command in a process group the finisher owns: started in its own session, stopped as a whole.

``OwnedGroup`` starts the command with ``start_new_session`` (the group's id is the child's pid), watches a cancel
signal and, once it is set, sends SIGTERM to the whole group (the sync script's trap rolls a half-built archive
copy back; rsync stops with it), waits ``terminate_timeout_s``, then SIGKILLs what is left. ``wait`` returns only
when the group is empty: no script, rsync or hook is left behind. Every group running is registered, so the last
resort of a process about to exit (``kill_running_groups``) reaches them too.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Protocol

__all__ = ["CancelSignal", "OwnedGroup", "kill_running_groups", "running_groups"]

logger = logging.getLogger(__name__)

#: how often a stopping group is looked at (its members gone, the deadline passed)
_POLL_S = 0.05
#: how long SIGKILLed members may stay listed (zombies waiting for their reaper) before the wait gives up
_ZOMBIE_WAIT_S = 2.0
_running: set[int] = set()
_running_lock = threading.Lock()


class CancelSignal(Protocol):
    """What the finisher's cancel token offers a stage (``work.cancel.CancelToken``)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...

    def check(self) -> None: ...


def running_groups() -> set[int]:
    """The process group ids of the owned commands running now."""
    with _running_lock:
        return set(_running)


def kill_running_groups() -> int:
    """SIGKILL every owned group still running (a process exiting at once); returns how many were signalled."""
    groups = running_groups()
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)
    return len(groups)


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """True while any process of the group exists (signal 0 reaches a zombie not yet reaped, too)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its credentials: it exists
        return True
    return True


class OwnedGroup:
    """One command in its own process group; ``stop`` or a set cancel signal ends the whole group."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None,
                 cancel: CancelSignal | None = None, terminate_timeout_s: float = 10.0,
                 timeout_s: float | None = None, label: str = "") -> None:
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            text=True, errors="replace", start_new_session=True)
        self.pgid = self.proc.pid
        self.terminate_timeout_s = terminate_timeout_s
        self.label = label or str(args[0])
        #: why the group was stopped: "cancelled", "timed out" (None: it ended by itself)
        self.stopped_because: str | None = None
        self._done = threading.Event()
        self._stop_lock = threading.Lock()
        with _running_lock:
            _running.add(self.pgid)
        self._watcher = threading.Thread(target=self._watch, args=(cancel, timeout_s), daemon=True,
                                         name=f"group-{self.pgid}")
        self._watcher.start()

    def _watch(self, cancel: CancelSignal | None, timeout_s: float | None) -> None:
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while not self._done.is_set():
            if cancel is not None and cancel.is_set():
                self.stop("cancelled")
                return
            if deadline is not None and time.monotonic() >= deadline:
                self.stop("timed out")
                return
            # the cancel token's own wait would miss the process ending: a short poll of both
            self._done.wait(_POLL_S if cancel is not None else 0.5)

    def stop(self, why: str) -> None:
        """SIGTERM the group, SIGKILL it after ``terminate_timeout_s``; returns once the group is empty."""
        with self._stop_lock:
            if self.stopped_because is None and not self._done.is_set():
                self.stopped_because = why
                logger.warning("%s: %s: SIGTERM to its process group %d (SIGKILL after %g s)", self.label, why,
                               self.pgid, self.terminate_timeout_s)
                _signal_group(self.pgid, signal.SIGTERM)
        self._await_empty(time.monotonic() + self.terminate_timeout_s)

    def _await_empty(self, deadline: float) -> None:
        killed_at: float | None = None
        while True:
            self._reap()
            if not _group_alive(self.pgid):
                return
            now = time.monotonic()
            if now >= deadline and killed_at is None:
                logger.warning("%s: process group %d still running: SIGKILL", self.label, self.pgid)
                _signal_group(self.pgid, signal.SIGKILL)
                killed_at = now
            elif killed_at is not None and now - killed_at > _ZOMBIE_WAIT_S:
                # SIGKILLed members that are still listed are zombies of a parent that does not reap them
                logger.warning("%s: process group %d SIGKILLed, not yet reaped", self.label, self.pgid)
                return
            time.sleep(_POLL_S)

    def _reap(self) -> None:
        if self.proc.poll() is not None:
            self._done.set()

    def wait(self) -> int:
        """The command's exit code, once every process of its group has gone (stragglers SIGKILLed)."""
        code = self.proc.wait()
        self._done.set()
        # the script is gone; a child of it may not be (killed with the group, or left by a trap)
        if _group_alive(self.pgid):
            if self.stopped_because is None:
                self.stopped_because = "left a child behind"
            _signal_group(self.pgid, signal.SIGTERM)
            self._await_empty(time.monotonic() + min(self.terminate_timeout_s, 2.0))
        with _running_lock:
            _running.discard(self.pgid)
        return code

    def kill_now(self) -> None:
        """An exception in the caller: the group ends at once, nothing of it outlives the call."""
        self.stop("caller stopped")
        self.wait()
