"""Small pure helpers of the work runner: backoff, what the ledger history says, an outcome that is not a failure."""

from __future__ import annotations

import json
from typing import Any

from onprem.finisher.ledger.store import WorkRecord


class WorkSuperseded(Exception):
    """The message names an older version of its object: the archive must not go back to it."""

    def __init__(self, current_version_id: str) -> None:
        self.current_version_id = current_version_id
        super().__init__(current_version_id)


def backoff_seconds(attempt: int, base: int, cap: int) -> int:
    """Exponential by attempt (1 → base, 2 → 2·base …), capped."""
    return int(min(cap, base * 2 ** max(attempt - 1, 0)))


def last_detail(record: WorkRecord | None, event: str, name: str) -> Any:
    for entry in reversed(record.history if record else []):
        if entry.get("event") == event:
            return entry.get(name)
    return None


def failures_with_cause(record: WorkRecord | None, cause: str) -> int:
    """How many failed attempts of the work's history had ``cause`` (retried or not)."""
    return sum(1 for e in (record.history if record else [])
               if e.get("event") in ("retry", "failed") and e.get("cause") == cause)


def synced_works(record: WorkRecord | None) -> set[str]:
    return {e["work_rid"] for e in (record.history if record else []) if e.get("event") == "work_synced"}


def rid_guess(body: str) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    rid = document.get("work_rid") if isinstance(document, dict) else None
    return rid if isinstance(rid, str) else None
