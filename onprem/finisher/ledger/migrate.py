"""``finisher ledger upgrade``: a ledger database brought to the schema revision this finisher knows, by Alembic.

One transaction under the schema lock (``ledger.schema.lock_schema``): finishers or operators upgrading at once
migrate it once, and a migration that fails leaves the database as it was (PostgreSQL's DDL is transactional; on
SQLite each revision is written to be re-run). A database newer than this finisher is refused, never downgraded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from onprem.finisher.ledger.engine import (
    DATABASE_ERRORS,
    DEFAULT_LOCK_TIMEOUT_S,
    LedgerBackendUnsupported,
    ledger_location,
    make_engine,
    unavailable,
)
from onprem.finisher.ledger.schema import HEAD, REVISIONS, LedgerSchemaMismatch, lock_schema, mismatch, revision_of

#: the Alembic script folder (env.py, versions/)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade`` did: the revision found (None: none, an empty or pre-revision database) and the one left."""

    location: str
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def upgrade(url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Upgrade:
    """Migrate the ledger at ``url`` to ``HEAD``; LedgerSchemaMismatch when it is newer, LedgerUnavailable when the
    database cannot be used, LedgerBackendUnsupported without Alembic (the ``postgres`` extra)."""
    location = ledger_location(url)
    try:
        from alembic import command
        from alembic.config import Config
    except ImportError as err:
        raise LedgerBackendUnsupported(location, (
            "migrations need alembic, which is not installed: pip install 'bdrc-restore[postgres]'")) from err
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # its set-up, not the migration
    engine = make_engine(url, lock_timeout_s)
    try:
        with engine.connect() as connection:
            lock_schema(connection)
            _, before = revision_of(connection)
            if before is not None and before not in REVISIONS:
                raise LedgerSchemaMismatch(location, before, mismatch(before) or "")
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
    except DATABASE_ERRORS as err:
        raise unavailable(url, err, lock_timeout_s) from err
    finally:
        engine.dispose()
    return Upgrade(location, before, HEAD)
