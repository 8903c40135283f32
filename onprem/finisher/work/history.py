"""Small pure helpers of the work runner: backoff and what the ledger history says (the staged works of its
``debagged`` entry read back in their one shape, ``StagedWork``)."""

from __future__ import annotations

import json
from typing import Any

from onprem.finisher.debag.model import StagedWork
from onprem.finisher.ledger.models import Event, Phase, WorkRecord


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
               if e.get("event") in (Event.RETRY, Phase.FAILED) and e.get("cause") == cause)


def staged_works(record: WorkRecord | None) -> list[StagedWork]:
    """The works the last ``debagged`` entry of the history placed in staging (``StagedWork.to_detail``)."""
    return [StagedWork.from_detail(detail) for detail in last_detail(record, Phase.DEBAGGED, "works") or []]


def synced_works(record: WorkRecord | None) -> set[str]:
    return {e["work_rid"] for e in (record.history if record else []) if e.get("event") == Event.WORK_SYNCED}


def rid_guess(body: str) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    rid = document.get("work_rid") if isinstance(document, dict) else None
    return rid if isinstance(rid, str) else None
