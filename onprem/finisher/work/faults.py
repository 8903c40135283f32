"""Crash checkpoints for the reliability suite: ``checkpoint(name)`` is a no-op unless a test asks for a kill there.

``FINISHER_FAULT_KILL_AT=<checkpoint>[:<n>]`` makes the n-th (default first) call of ``checkpoint(<checkpoint>)``
in this process send itself SIGKILL: no cleanup handler, ``finally`` or atexit runs, as in a power cut or an
OOM kill. The worker calls it at the points where a crash matters (``CHECKPOINTS``); production never sets it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter

logger = logging.getLogger(__name__)

KILL_AT_VAR = "FINISHER_FAULT_KILL_AT"

AFTER_RECEIVE = "after_receive"
MID_DOWNLOAD = "mid_download"
MID_EXTRACT = "mid_extract"
MID_SYNC = "mid_sync"
BEFORE_DELETE = "before_delete"
#: every member of a fetched zip written and verified, its works not yet placed (not a trial of its own)
BEFORE_PLACE = "before_place"
#: in the order a work meets them
CHECKPOINTS = (AFTER_RECEIVE, MID_DOWNLOAD, MID_EXTRACT, MID_SYNC, BEFORE_DELETE)


class _Hits:
    """How often each checkpoint was reached in this process (only counted while a kill is armed)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str) -> int:
        with self._lock:
            self._counts[name] += 1
            return self._counts[name]


_HITS = _Hits()


def armed_kill() -> tuple[str, int] | None:
    """The ``(checkpoint, n)`` named by FINISHER_FAULT_KILL_AT, or None when no kill is armed."""
    spec = os.environ.get(KILL_AT_VAR, "").strip()
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, max(int(nth or 1), 1)


def checkpoint(name: str, *, work_rid: str | None = None) -> None:
    """Kill this process with SIGKILL when FINISHER_FAULT_KILL_AT names ``name`` and this is its n-th hit."""
    armed = armed_kill()
    if armed is None or armed[0] != name:
        return
    if _HITS.add(name) < armed[1]:
        return
    logger.warning("fault injection: SIGKILL at checkpoint %s", name, extra={"work_rid": work_rid or "-"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)
