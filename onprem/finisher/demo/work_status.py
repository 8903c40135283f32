"""How the demo talks to the finisher CLI: the request-restore arguments and the reading of ``status --json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from config.model import EnvironmentConfig

if TYPE_CHECKING:
    from onprem.finisher.demo.pipeline import StagedObject

#: the phase a work reaches once it is in the archive
SYNCED = "synced"


def request_restore_args(environment: EnvironmentConfig, staged: Sequence[StagedObject]) -> list[str]:
    """``finisher request-restore`` for every staged object, with the environment's tier and days."""
    args = ["request-restore", "--tier", environment.restore.tier, "--days", str(environment.restore.days)]
    for item in staged:
        args.append(f"s3://{item.bucket}/{item.key}")
    return args


def status_rows(text: str) -> list[dict[str, Any]]:
    """The works of ``finisher status --json`` (a list, or an object holding a ``works`` list)."""
    document = json.loads(text)
    if isinstance(document, dict):
        document = document.get("works", [])
    return [row for row in document if isinstance(row, dict)]


def status_problems(text: str, expected_rids: Sequence[str]) -> list[str]:
    """Every expected work must be in the ledger and synced; returns what is not."""
    try:
        rows = status_rows(text)
    except ValueError as err:
        return [f"finisher status --json printed no JSON: {err}"]
    by_rid = {str(row.get("work_rid")): row for row in rows}
    problems = []
    for rid in expected_rids:
        row = by_rid.get(rid)
        if row is None:
            problems.append(f"{rid}: not in the finisher's ledger")
        elif str(row.get("phase", row.get("state"))) != SYNCED:
            problems.append(f"{rid}: ledger phase is {row.get('phase', row.get('state'))!r}, not {SYNCED!r}")
    return problems
