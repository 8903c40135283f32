"""Shared fixtures: the sample events of ../shared/events (with an in-repo copy as fallback), the ledger backends."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
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


#: folders whose tests share one expensive session fixture (a synthesis, the image's site): under pytest-xdist
#: (``-n`` workers with ``--dist loadgroup``; ``make test`` runs serially: on 2 cores workers were no faster) each
#: folder stays on one worker, so it is made once; every other test file stays on one worker too, so its module
#: fixtures (a whole drain) run once
_ONE_WORKER_FOLDERS = ("infra", "container")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--run-long"):
        items[:] = [item for item in items if "long" not in item.keywords]
    for item in items:
        where = Path(str(item.path)).resolve().relative_to(REPO_ROOT)
        shared = len(where.parts) > 2 and where.parts[0] == "tests" and where.parts[1] in _ONE_WORKER_FOLDERS
        item.add_marker(pytest.mark.xdist_group(where.parts[1] if shared else where.as_posix()))


def _endpoints_and_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "FINISHER_", "BDRC_"))}


@pytest.fixture(autouse=True)
def environment_is_left_as_found() -> Iterator[None]:
    """Every test leaves the AWS and finisher variables as it found them: a leaked ``AWS_ENDPOINT_URL`` (a
    monkeypatch undone after the moto server's own patching) sent later in-process moto tests to a stopped server."""
    before = _endpoints_and_settings()
    yield
    after = _endpoints_and_settings()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the test left these variables changed: {changed}"


@pytest.fixture
def eventbridge_restore_event() -> dict[str, Any]:
    return load_sample_event("object-restore-completed.json")


@pytest.fixture
def s3_notification_restore_event() -> dict[str, Any]:
    return load_sample_event("s3-notification-restore-completed.json")
