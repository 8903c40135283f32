"""The ledger's database engine and what a database that cannot be used becomes: one named error.

SQLite gets WAL, a bounded busy timeout (``lock_timeout_s``: how long a write waits for another process's lock)
and foreign keys on every connection. A corrupt file, a read-only file or folder, a lock held longer than the
timeout: each is a ``LedgerUnavailable`` naming the database and the cause, never a traceback.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from onprem.finisher.errors import LedgerUnavailable

#: how long a write waits for a lock held by another finisher, unless the settings say otherwise
DEFAULT_LOCK_TIMEOUT_S = 10.0
_WAL_ATTEMPTS = 50


def ledger_location(url: str) -> str:
    """What an operator recognises: the SQLite file's path, or the server URL without its password."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.database or ":memory:"
    return parsed.render_as_string(hide_password=True)


def make_engine(url: str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> sa.Engine:
    """An engine; SQLite gets WAL, a busy timeout of ``lock_timeout_s`` and foreign keys on every connection."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
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


def unavailable(url: str, err: BaseException, lock_timeout_s: float) -> LedgerUnavailable:
    """The named error for a database error of ``url`` (SQLAlchemy's wrapper or the driver's own)."""
    original = getattr(err, "orig", None) or err
    reason = str(original).strip() or type(original).__name__
    if "locked" in reason or "busy" in reason:
        reason = f"locked by another process for {lock_timeout_s:g} s ({reason})"
    return LedgerUnavailable(ledger_location(url), reason)


#: what a database error looks like, whichever layer raises it (SQLAlchemy wraps the driver's errors, except
#: inside a connect event where the driver's own error may come through)
DATABASE_ERRORS: tuple[type[BaseException], ...] = (sa.exc.OperationalError, sa.exc.DatabaseError, sqlite3.Error)
