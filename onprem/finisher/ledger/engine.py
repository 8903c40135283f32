"""The ledger's database engine and what a database that cannot be used becomes: one named error.

Two backends: SQLite (the embedded default) and PostgreSQL through psycopg 3 (the server ledger of several hosts,
the ``postgres`` extra). Any other URL, MySQL and MariaDB included, is refused before a connection is made
(``LedgerBackendUnsupported``): their leases and the ``UNIQUE(bucket, key)`` index were never tested (that index
exceeds MySQL's key-length limit).

``lock_timeout_s`` bounds how long a ledger call waits for the database: on SQLite the busy timeout (a write
waiting for another process's lock), on PostgreSQL the server's ``lock_timeout``, the connect timeout and the
budget of reconnection attempts (``ledger.reconnect``). A corrupt file, a read-only file or folder, a lock held
longer than the timeout, a server down for longer: each is a ``LedgerUnavailable`` naming the database and the
cause, never a traceback.
"""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from onprem.finisher.errors import LedgerUnavailable

#: the backends the ledger is tested on; every other SQLAlchemy dialect is refused at start
SUPPORTED_BACKENDS = ("sqlite", "postgresql")

#: how long a write waits for a lock held by another finisher, unless the settings say otherwise
DEFAULT_LOCK_TIMEOUT_S = 10.0
_WAL_ATTEMPTS = 50


def ledger_location(url: str) -> str:
    """What an operator recognises: the SQLite file's path, or the server URL without its password."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.database or ":memory:"
    return parsed.render_as_string(hide_password=True)


class LedgerBackendUnsupported(LedgerUnavailable):
    """A ledger URL of a database the ledger does not support (MySQL, MariaDB, …) or whose driver is missing."""

    cause = "ledger_backend_unsupported"


def _server_url(url: str) -> sa.URL:
    """The URL of a supported server database with its driver (``postgresql://`` means psycopg 3), or the
    named refusal."""
    parsed = sa.engine.make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("mysql", "mariadb"):
        raise LedgerBackendUnsupported(ledger_location(url), (
            f"{backend} is not supported as the ledger (its key-length limit refuses the (bucket, key) index, and "
            "the leases are proven on SQLite and PostgreSQL only): use postgresql+psycopg://… or SQLite"))
    if backend not in SUPPORTED_BACKENDS:
        raise LedgerBackendUnsupported(ledger_location(url), (
            f"{backend} is not supported as the ledger: use postgresql+psycopg://… or sqlite:///…"))
    if driver not in ("", "psycopg"):
        raise LedgerBackendUnsupported(ledger_location(url), (
            f"the {driver} driver is not supported: use postgresql+psycopg://… (psycopg 3)"))
    try:
        import psycopg  # noqa: F401 - only to name a missing extra before SQLAlchemy's ModuleNotFoundError
    except ImportError as err:
        raise LedgerBackendUnsupported(ledger_location(url), (
            "the PostgreSQL driver is not installed: pip install 'bdrc-restore[postgres]'")) from err
    return parsed.set(drivername="postgresql+psycopg")


def is_postgresql(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


def make_engine(url: str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> sa.Engine:
    """An engine. SQLite gets WAL, a busy timeout of ``lock_timeout_s`` and foreign keys on every connection;
    PostgreSQL a connect timeout and a lock timeout of ``lock_timeout_s``, and a ping before a pooled connection
    is reused (a restarted server's dead connections are replaced, not handed out)."""
    if not url.startswith("sqlite"):
        server_url = _server_url(url)
        timeout_ms = max(1, int(lock_timeout_s * 1000))
        return sa.create_engine(server_url, pool_pre_ping=True, connect_args={
            "connect_timeout": max(1, math.ceil(lock_timeout_s)), "options": f"-c lock_timeout={timeout_ms}",
            "application_name": "bdrc-finisher"})
    database = sa.engine.make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": lock_timeout_s, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(lock_timeout_s * 1000)}")
        _switch_to_wal(cursor, deadline=time.monotonic() + lock_timeout_s)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _switch_to_wal(cursor: Any, *, deadline: float | None = None) -> None:
    """Switching the journal mode ignores the busy timeout when another process switches it at the same moment:
    retried while 'locked', until ``deadline`` (monotonic) or ``_WAL_ATTEMPTS`` attempts."""
    for attempt in range(_WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            out_of_time = deadline is not None and time.monotonic() >= deadline
            if "locked" not in str(err) or attempt == _WAL_ATTEMPTS - 1 or out_of_time:
                raise
            time.sleep(0.02 * (attempt + 1))


def driver_reason(err: BaseException) -> str:
    """The driver's message of ``err`` on one line (libpq's spans several: the cause, then a hint)."""
    original = getattr(err, "orig", None) or err
    return " ".join(str(original).split()) or type(original).__name__


def unavailable(url: str, err: BaseException, lock_timeout_s: float) -> LedgerUnavailable:
    """The named error for a database error of ``url`` (SQLAlchemy's wrapper or the driver's own)."""
    reason = driver_reason(err)
    if "locked" in reason or "busy" in reason or "lock timeout" in reason:
        reason = f"locked by another process for {lock_timeout_s:g} s ({reason})"
    return LedgerUnavailable(ledger_location(url), reason)


#: what a database error looks like, whichever layer raises it (SQLAlchemy wraps the driver's errors, except
#: inside a connect event where the driver's own error may come through)
DATABASE_ERRORS: tuple[type[BaseException], ...] = (sa.exc.OperationalError, sa.exc.DatabaseError, sqlite3.Error)


#: PostgreSQL's SQLSTATE of a lock not granted within ``lock_timeout``
_LOCK_NOT_AVAILABLE = "55P03"


class LedgerConnectionLost(LedgerUnavailable):
    """The server went away before a transaction committed (a restart, a failover, the network): nothing of it was
    written, so the ledger runs it again (``retry_delays``); raised to the caller only once the budget is spent."""

    cause = "ledger_connection_lost"


class LedgerCommitUnknown(LedgerConnectionLost):
    """The server went away during COMMIT: the transaction may or may not be written. A call whose effect is the
    same run twice (a lease's compare-and-set, an upsert, a read) is simply run again; a call that appends to a
    work's history first reads the row back to learn which it was (``Ledger._appending``)."""

    cause = "ledger_commit_unknown"


def is_transient(engine: sa.Engine, err: BaseException) -> bool:
    """A PostgreSQL error after which the same transaction may simply run again: the connection lost or refused
    (a restart), the server shutting down or starting up, a serialization failure or a deadlock (rolled back)."""
    if not is_postgresql(engine):
        return False  # SQLite's waits are its busy timeout's; its other errors do not pass by themselves
    if getattr(getattr(err, "orig", None), "sqlstate", None) == _LOCK_NOT_AVAILABLE:
        return False  # a row lock held past lock_timeout: waited for once already, like SQLite's busy timeout
    return isinstance(err, sa.exc.OperationalError | sa.exc.InterfaceError) or bool(
        getattr(err, "connection_invalidated", False))


def retry_delays(budget_s: float, *, first_s: float = 0.05, cap_s: float = 2.0) -> list[float]:
    """The pauses between attempts of one ledger call: doubling from ``first_s``, each at most ``cap_s``, adding up
    to at most ``budget_s`` (at least one pause, so a budget of 0 still survives one dropped connection)."""
    delays, delay = [first_s], first_s
    while sum(delays) + min(delay * 2, cap_s) <= budget_s:
        delay = min(delay * 2, cap_s)
        delays.append(delay)
    return delays
