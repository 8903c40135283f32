"""The ledger's two backends for the tests: SQLite in the test's folder, and a throwaway PostgreSQL cluster.

The cluster is made once per session (``initdb`` + ``pg_ctl`` from Debian's ``postgresql`` package, which
``make test`` installs) in a temporary folder, listening on a free loopback port and on a unix socket there, and
stopped and removed at the end. Each test gets its own database in it. A missing package fails the tests loudly:
nothing here skips.

``ledger_url`` is parametrized, so every test that takes it runs twice and its id names the backend:
``test_lease_is_exclusive[sqlite]``, ``test_lease_is_exclusive[postgresql]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.postgres import PostgresCluster, postgres_bin, running_cluster

__all__ = ["PostgresCluster", "postgres_bin", "running_cluster"]

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the whole session, stopped and removed at its end."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def ledger_backend(request: pytest.FixtureRequest) -> str:
    """The backend's name, the test id's ``[sqlite]`` or ``[postgresql]``."""
    return str(request.param)


@pytest.fixture
def new_ledger_url(ledger_backend: str, tmp_path: Path,
                   request: pytest.FixtureRequest) -> Callable[[], str]:
    """A maker of fresh, empty ledger databases on the test's backend (a file, or a database in the cluster)."""
    names = itertools.count(1)

    def make() -> str:
        if ledger_backend == "sqlite":
            return f"sqlite:///{tmp_path / f'ledger-{next(names)}.sqlite'}"
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        return cluster.new_database()

    return make


@pytest.fixture
def ledger_url(new_ledger_url: Callable[[], str]) -> str:
    """A fresh, empty ledger database on the test's backend."""
    return new_ledger_url()
