"""The ledger's schema revision: the one this finisher knows, the one a database holds, and the refusal of any other.

The revisions are Alembic's (``ledger/migrations/versions``), numbered ``0001``, ``0002`` … so that their order
reads without Alembic; a database's revision is the row of Alembic's own ``alembic_version`` table. A finisher
uses a database at exactly ``HEAD``:

- an empty database is created at ``HEAD``: the models' tables and the version row in one transaction, one
  finisher at a time (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock, its DDL being
  transactional), so finishers starting at once on a fresh ledger all start and the tables are made once;
- an older one (a known earlier revision, or the tables of a ledger made before revisions existed, with no
  version) is refused until ``finisher ledger upgrade`` migrates it;
- a newer one (a revision this finisher does not know) is refused: the finisher is older than its ledger.

Both refusals are ``LedgerSchemaMismatch``, one line naming the database's revision and this finisher's.
"""

from __future__ import annotations

import sqlalchemy as sa

from onprem.finisher.errors import LedgerUnavailable
from onprem.finisher.ledger.models import Base

#: every revision this finisher ships, oldest first (``tests`` check them against the migrations folder)
REVISIONS = ("0001",)
HEAD = REVISIONS[-1]
#: Alembic's table of the revision a database is at
VERSION_TABLE = sa.Table("alembic_version", sa.MetaData(), sa.Column("version_num", sa.String(32), nullable=False),
                         sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
#: the ledger's own tables: a database holding none of them is empty, whatever else it holds
LEDGER_TABLES = frozenset(Base.metadata.tables)
#: the key of PostgreSQL's advisory lock that serializes the ledger's schema changes between hosts
SCHEMA_LOCK_KEY = 0x6264_7263_6C65_6467  # "bdrcledg"


class LedgerSchemaMismatch(LedgerUnavailable):
    """The database's schema revision is not the one this finisher knows: one line naming both."""

    cause = "ledger_schema_mismatch"

    def __init__(self, location: str, found: str | None, reason: str) -> None:
        super().__init__(location, reason)
        self.found, self.known = found, HEAD


def mismatch(found: str | None, known: tuple[str, ...] = REVISIONS) -> str | None:
    """Why a database at revision ``found`` (None: tables without a version) cannot be used by a finisher that
    knows ``known``; None when it can (``found`` is the newest of ``known``)."""
    head = known[-1]
    if found == head:
        return None
    if found is None:
        return (f"schema revision none (a ledger made before schema revisions), this finisher knows {head}: "
                "run `finisher ledger upgrade`")
    if found in known:
        return f"schema revision {found} is older than this finisher's {head}: run `finisher ledger upgrade`"
    return f"schema revision {found} is newer than this finisher's {head}: run a finisher that knows {found}"


def lock_schema(connection: sa.Connection) -> None:
    """Begin the transaction that may change the schema, one finisher at a time."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: a second opener waits here


def revision_of(connection: sa.Connection) -> tuple[bool, str | None]:
    """(whether the database holds any ledger table, its revision or None)."""
    tables = set(sa.inspect(connection).get_table_names())
    if VERSION_TABLE.name not in tables:
        return bool(tables & LEDGER_TABLES), None
    versions = connection.execute(sa.select(VERSION_TABLE.c.version_num)).scalars().all()
    # more than one row would be branches, which this ledger's line of revisions never has
    return bool(tables & LEDGER_TABLES), ",".join(sorted(versions)) or None


def create_at_head(connection: sa.Connection) -> None:
    """The models' tables and the version row of ``HEAD`` (inside the caller's transaction)."""
    Base.metadata.create_all(connection)
    VERSION_TABLE.create(connection, checkfirst=True)
    connection.execute(sa.delete(VERSION_TABLE))
    connection.execute(sa.insert(VERSION_TABLE).values(version_num=HEAD))


def prepare(engine: sa.Engine, location: str) -> None:
    """Make an empty database's tables at ``HEAD``; LedgerSchemaMismatch for a database at any other revision.

    The first look takes no write lock (a read-only ledger can still be read); only a database found empty is
    looked at again under the schema lock, where a finisher that started at the same moment may just have made it.
    """
    with engine.connect() as connection:
        has_tables, found = revision_of(connection)
    if not has_tables and found is None:
        with engine.connect() as connection:
            lock_schema(connection)
            has_tables, found = revision_of(connection)
            if not has_tables and found is None:
                create_at_head(connection)
                found = HEAD
            connection.commit()
    reason = mismatch(found)
    if reason is not None:
        raise LedgerSchemaMismatch(location, found, reason)
