"""A throwaway PostgreSQL cluster: ``initdb`` + ``pg_ctl`` from Debian's ``postgresql`` package into a temporary
folder, on a free port of the addresses given (loopback by default) and a unix socket there, stopped and removed
at the end of the block. The tests' ledger backend (tests/ledger_backends.py), the hosts' tests and bench use it.

    with running_cluster() as cluster:
        url = cluster.new_database()          # postgresql+psycopg://postgres@127.0.0.1:PORT/ledger_1
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

__all__ = ["PostgresCluster", "postgres_bin", "running_cluster"]

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
