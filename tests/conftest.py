"""Shared fixtures: the sample events of ../shared/events (with an in-repo copy as fallback), the ledger backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# the ledger's backends (SQLite, a session's PostgreSQL cluster) for every test that takes ``ledger_url``
from tests.ledger_backends import ledger_backend, ledger_url, new_ledger_url, postgres_cluster  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
_EVENT_DIRS = (REPO_ROOT.parent / "shared" / "events", REPO_ROOT / "tests" / "data" / "events")


def load_sample_event(name: str) -> dict[str, Any]:
    """A sample event from shared/events, or the copy kept in tests/data/events."""
    for folder in _EVENT_DIRS:
        path = folder / name
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    raise FileNotFoundError(name)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-long", action="store_true", help="also run the long randomized variants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-long"):
        return
    items[:] = [item for item in items if "long" not in item.keywords]


@pytest.fixture
def eventbridge_restore_event() -> dict[str, Any]:
    return load_sample_event("object-restore-completed.json")


@pytest.fixture
def s3_notification_restore_event() -> dict[str, Any]:
    return load_sample_event("s3-notification-restore-completed.json")
