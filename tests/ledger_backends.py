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
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

BACKENDS = ("sqlite", "postgresql")
#: the account that runs the cluster when the tests run as root (initdb refuses root); Debian's package makes it
_CLUSTER_USER = "postgres"


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps it off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make setup`, "
                           "which installs Debian's postgresql package")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresCluster:
    """A cluster in ``data_dir``, run by ``user`` (None: the current user), on 127.0.0.1:``port``."""

    bin_dir: Path
    data_dir: Path
    port: int
    user: str | None
    #: the addresses it listens on (the hosts' tests add their services address: tests/hosts)
    listen: tuple[str, ...] = ("127.0.0.1",)
    #: networks (CIDR) besides loopback whose clients it trusts (pg_hba ``host … trust``)
    client_networks: tuple[str, ...] = ()
    _databases: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")

    def init(self) -> None:
        self._run("initdb", "--auth=trust", "--username=postgres", "--no-sync", "--encoding=UTF8",
                  "--no-instructions", "-D", str(self.data_dir / "data"))
        with (self.data_dir / "data" / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in self.client_networks)

    def start(self) -> None:
        # fsync off: a test cluster loses nothing it must keep; a clean stop still checkpoints
        options = (f"-c port={self.port} -c listen_addresses={','.join(self.listen)}"
                   f" -c unix_socket_directories={self.data_dir} -c fsync=off -c full_page_writes=off"
                   " -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data_dir / "data"), "-l", str(self.data_dir / "server.log"), "-w",
                  "-o", options, "start")

    def stop(self) -> None:
        """A fast stop: the server ends every session (their transactions roll back) and checkpoints."""
        self._run("pg_ctl", "-D", str(self.data_dir / "data"), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql+psycopg://postgres@{host}:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"ledger_{next(self._databases)}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)


@contextmanager
def running_cluster(listen: tuple[str, ...] = ("127.0.0.1",),
                    client_networks: tuple[str, ...] = ()) -> Iterator[PostgresCluster]:
    """A new cluster listening on ``listen`` (and its unix socket), trusting ``client_networks`` too; stopped and
    removed at the end of the block."""
    user = _CLUSTER_USER if os.geteuid() == 0 else None
    data_dir = Path(tempfile.mkdtemp(prefix="bdrc-ledger-pg-"))
    if user is not None:
        account = pwd.getpwnam(user)
        os.chown(data_dir, account.pw_uid, account.pw_gid)
    cluster = PostgresCluster(postgres_bin(), data_dir, _free_port(), user, listen, client_networks)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        except RuntimeError:
            pass  # never started, or already stopped by a test that failed mid-restart
        shutil.rmtree(data_dir, ignore_errors=True)


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
