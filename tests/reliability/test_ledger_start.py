"""Two finishers starting at once on a fresh state directory (or a fresh server database) both start.

The ledger creates its tables on first open; two processes that both find them missing both try to create them.
A barrier in SQLAlchemy's ``before_create`` event holds each opener until the other has also found the tables
missing, so the race happens every time instead of one start in five.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from onprem.finisher.ledger.models import Base
from onprem.finisher.ledger.store import Ledger


def test_two_finishers_opening_a_fresh_ledger_at_once_both_start(tmp_path: Path) -> None:
    barrier = threading.Barrier(2, timeout=10)
    waited = threading.local()

    def after_the_check(*_: object, **__: object) -> None:
        if not getattr(waited, "done", False):  # only the first creation attempt of each opener waits
            waited.done = True
            barrier.wait()

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    errors: list[BaseException] = []

    def open_ledger() -> None:
        try:
            Ledger(url).close()
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    sa.event.listen(Base.metadata, "before_create", after_the_check)
    try:
        openers = [threading.Thread(target=open_ledger) for _ in range(2)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(timeout=30)
    finally:
        sa.event.remove(Base.metadata, "before_create", after_the_check)
    assert errors == []
    ledger = Ledger(url)
    try:
        assert ledger.works() == []
    finally:
        ledger.close()
