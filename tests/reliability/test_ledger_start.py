"""Finishers starting at once on a fresh state directory (or a fresh server database) all start, and the ledger's
tables are made once, at the head revision.

Each opener that finds the database empty looks again under the schema lock (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL's advisory lock) before it creates anything: a barrier releases four openers at the same moment, and
SQLAlchemy's ``before_create`` event counts the table creations.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from onprem.finisher.ledger.models import Base
from onprem.finisher.ledger.schema import HEAD, VERSION_TABLE
from onprem.finisher.ledger.store import Ledger

OPENERS = 4


def test_finishers_opening_a_fresh_ledger_at_once_all_start_and_create_it_once(ledger_url: str) -> None:
    barrier = threading.Barrier(OPENERS, timeout=10)
    creations: list[str] = []
    errors: list[BaseException] = []

    def count_creation(*_: object, **__: object) -> None:
        creations.append(threading.current_thread().name)

    def open_ledger() -> None:
        try:
            barrier.wait()
            Ledger(ledger_url).close()
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    sa.event.listen(Base.metadata, "before_create", count_creation)
    try:
        openers = [threading.Thread(target=open_ledger, name=f"opener-{i}") for i in range(OPENERS)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(timeout=30)
    finally:
        sa.event.remove(Base.metadata, "before_create", count_creation)
    assert errors == []
    assert len(creations) == 1
    ledger = Ledger(ledger_url)
    try:
        assert ledger.works() == []
        with ledger.engine.connect() as connection:
            assert list(connection.execute(sa.select(VERSION_TABLE.c.version_num)).scalars()) == [HEAD]
    finally:
        ledger.close()
