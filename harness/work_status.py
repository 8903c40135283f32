"""How the demo talks to the finisher CLI: the request-restore arguments and the reading of ``status --json``.

The ledger keeps one row per restored object (its message); a zip holding several bags records one
``work_synced`` history event per bag work, and the row reaches ``synced`` once all of them are in the archive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from config.model import EnvironmentConfig
from onprem.finisher.ledger.store import PHASES

if TYPE_CHECKING:
    from harness.pipeline import StagedObject

SYNCED = "synced"
WORK_SYNCED = "work_synced"


def request_restore_args(environment: EnvironmentConfig, staged: Sequence[StagedObject]) -> list[str]:
    """``finisher request-restore`` for every staged object, with the environment's tier and days."""
    args = ["request-restore", "--yes", "--tier", environment.restore.tier, "--days", str(environment.restore.days)]
    return args + [f"s3://{item.bucket}/{item.key}" for item in staged]


def status_rows(text: str) -> list[dict[str, Any]]:
    """The rows of ``finisher status --json`` (an object holding a ``works`` list, or a bare list)."""
    document = json.loads(text)
    if isinstance(document, dict):
        document = document.get("works", [])
    return [row for row in document if isinstance(row, dict)]


def history_events(row: Mapping[str, Any]) -> list[str]:
    return [str(item.get("event")) for item in row.get("history") or [] if isinstance(item, dict)]


def synced_works(row: Mapping[str, Any]) -> set[str]:
    """The bag works of a ledger row that reached the archive (``work_synced`` events)."""
    return {str(item.get("work_rid")) for item in row.get("history") or []
            if isinstance(item, dict) and item.get("event") == WORK_SYNCED}


def status_problems(text: str, expected: Mapping[str, Sequence[str]]) -> list[str]:
    """``expected``: key RID → the RIDs of the bags its zip holds. Every row must be ``synced``, with every
    phase of ``ledger.PHASES`` in its history and a ``work_synced`` event for each bag; returns what is not."""
    try:
        rows = {str(row.get("work_rid")): row for row in status_rows(text)}
    except ValueError as err:
        return [f"finisher status --json printed no JSON: {err}"]
    problems = []
    for key_rid, work_rids in expected.items():
        row = rows.get(key_rid)
        if row is None:
            problems.append(f"{key_rid}: not in the finisher's ledger")
            continue
        if row.get("phase") != SYNCED:
            problems.append(f"{key_rid}: ledger phase is {row.get('phase')!r} ({row.get('last_error') or '-'})")
        missing = [phase for phase in PHASES if phase not in history_events(row)]
        if missing:
            problems.append(f"{key_rid}: the ledger has no {', '.join(missing)} for this work")
        unsynced = sorted(set(work_rids) - synced_works(row))
        if unsynced:
            problems.append(f"{key_rid}: the ledger shows no sync of {', '.join(unsynced)}")
    return problems
