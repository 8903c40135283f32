"""Switching to WAL while another finisher switches it fails with 'database is locked' despite the busy timeout."""

from __future__ import annotations

import sqlite3

import pytest

from onprem.finisher.ledger.engine import _switch_to_wal


class _Cursor:
    def __init__(self, failures: int, message: str = "database is locked") -> None:
        self.failures, self.message, self.calls = failures, message, 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise sqlite3.OperationalError(self.message)


def test_locked_journal_mode_switch_is_retried() -> None:
    cursor = _Cursor(failures=3)
    _switch_to_wal(cursor)
    assert cursor.calls == 4


def test_other_errors_are_not_retried() -> None:
    cursor = _Cursor(failures=1, message="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _switch_to_wal(cursor)
    assert cursor.calls == 1
