"""The ledger on both backends (a real SQLite file, a database in the session's PostgreSQL cluster): registration,
dedup key, phases and history, leases, restore requests, the (bucket, key) index, and the named error of a
database that cannot be used (locked on both; corrupt or read-only files on SQLite, the only one with files)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from contract import RestoredWork
from onprem.finisher.errors import LedgerUnavailable
from onprem.finisher.ledger.models import RestoreRequestRow, WorkRow
from onprem.finisher.ledger.store import Ledger


def make_work(rid: str = "W1NLM4700", version: str = "v1") -> RestoredWork:
    return RestoredWork.build(collection="NLM", bucket="staging.nlm", key=f"Archive0/00/{rid}/{rid}.bag.zip",
                              region="us-east-1", size=10, etag="abc", version_id=version,
                              event_time=datetime(2026, 11, 29, tzinfo=UTC), source_event_id="e1",
                              restore_expiry=datetime(2026, 12, 5, tzinfo=UTC))


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    opened = Ledger(ledger_url)
    yield opened
    opened.close()


def test_sqlite_ledger_uses_wal(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    with ledger.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_same_object_version_is_one_row(ledger: Ledger) -> None:
    work = make_work()
    first = ledger.register(work, work.to_body(), message_id="m1")
    second = ledger.register(work, work.to_body(), message_id="m2")
    assert first.idempotency_key == second.idempotency_key
    assert len(ledger.works(["W1NLM4700"])) == 1
    ledger.register(make_work(version="v2"), make_work(version="v2").to_body())
    assert len(ledger.works(["W1NLM4700"])) == 2


def test_phases_set_timestamps_and_history(ledger: Ledger) -> None:
    work = make_work()
    ledger.register(work, work.to_body())
    for phase in ("restore_completed", "downloaded", "debagged", "synced"):
        ledger.advance(work.idempotency_key, phase, detail=phase)
    record = ledger.get(work.idempotency_key)
    assert record is not None and record.phase == "synced"
    assert all(record.timestamps[name] for name in ("restore_completed", "downloaded", "debagged", "synced"))
    assert [e["event"] for e in record.history] == ["received", "restore_completed", "downloaded", "debagged",
                                                    "synced"]
    assert record.as_json()["synced_at"].endswith("+00:00")


def test_failures_count_attempts_and_permanent_ones_fail_the_work(ledger: Ledger) -> None:
    work = make_work()
    ledger.register(work, work.to_body())
    ledger.fail(work.idempotency_key, "transfer", "W1NLM4700: reset", permanent=False)
    record = ledger.fail(work.idempotency_key, "bag_invalid", "W1NLM4700: bad bag", permanent=True)
    assert (record.phase, record.attempts, record.last_cause) == ("failed", 2, "bag_invalid")
    assert ledger.reset_for_retry(work.idempotency_key).phase == "received"


def test_lease_is_exclusive_until_released_or_expired(ledger: Ledger) -> None:
    work = make_work()
    ledger.register(work, work.to_body())
    key = work.idempotency_key
    assert ledger.acquire_lease(key, "host-a:1", 60)
    assert not ledger.acquire_lease(key, "host-b:2", 60)
    assert ledger.renew_lease(key, "host-a:1", 60)
    assert not ledger.renew_lease(key, "host-b:2", 60)
    ledger.release_lease(key, "host-a:1")
    assert ledger.acquire_lease(key, "host-b:2", -1)  # expired at once
    assert ledger.acquire_lease(key, "host-a:1", 60)


def test_concurrent_lease_attempts_from_eight_ledgers_have_one_winner(ledger_url: str) -> None:
    url = ledger_url
    work = make_work()
    Ledger(url).register(work, work.to_body())
    ledgers = [Ledger(url) for _ in range(8)]
    wins: list[bool] = []
    barrier = threading.Barrier(len(ledgers))

    def contend(index: int) -> None:
        barrier.wait()
        wins.append(ledgers[index].acquire_lease(work.idempotency_key, f"host:{index}", 60))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(ledgers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for each in ledgers:
        each.close()
    assert sorted(wins) == [False] * 7 + [True]


def test_restore_request_is_linked_to_the_work_when_its_message_arrives(ledger: Ledger) -> None:
    work = make_work()
    ledger.record_restore_request(work_rid=work.work_rid, bucket=work.bucket, key=work.key, tier="Bulk", days=5)
    assert ledger.restore_requests(pending_only=True)[0]["status"] == "requested"
    record = ledger.register(work, work.to_body())
    assert record.timestamps["restore_requested"] is not None
    assert record.history[0]["event"] == "restore_requested"
    assert ledger.restore_requests(pending_only=True) == []


def test_rejected_message_is_recorded_with_its_cause(ledger: Ledger) -> None:
    record = ledger.record_rejected("not json", None, "contract", "message body is not JSON")
    assert (record.phase, record.last_cause, record.source) == ("failed", "contract", "rejected")


def test_rejected_message_with_an_overlong_rid_is_recorded_not_unavailable(ledger: Ledger) -> None:
    # PostgreSQL enforces VARCHAR(100): the RID read from a bad message was a DataError, hence LedgerUnavailable
    record = ledger.record_rejected('{"work_rid": "W' + "1" * 299 + '"}', "W" + "1" * 299, "contract", "bad RID")
    assert (record.phase, record.work_rid) == ("failed", "W" + "1" * 99)


def test_the_longest_s3_names_fit_the_bucket_key_unique_index(ledger: Ledger) -> None:
    bucket = "b" * 63  # S3's longest bucket name; the column holds 255
    key = "Archive0/00/" + "ཀ" * 337  # 3-byte UTF-8 characters: 12 + 1011 = 1023 bytes, S3's limit is 1024
    ledger.record_restore_request(work_rid="W1", bucket=bucket, key=key, tier="Bulk", days=5)
    ledger.record_restore_request(work_rid="W1", bucket=bucket, key=key, tier="Bulk", days=7)  # the same row
    ledger.record_restore_request(work_rid="W2", bucket="b" * 255, key="k" * 1024, tier="Bulk", days=5)
    assert [(r["work_rid"], r["times_requested"], r["days"]) for r in ledger.restore_requests()] == [
        ("W1", 2, 7), ("W2", 1, 5)]
    with ledger.engine.begin() as connection, pytest.raises(sa.exc.IntegrityError):
        connection.execute(sa.insert(RestoreRequestRow).values(
            work_rid="W3", bucket=bucket, key=key, tier="Bulk", days=1, status="requested", times_requested=1,
            requested_at=datetime(2026, 1, 1)))


def test_lease_times_on_a_server_ledger_are_the_servers_clock(ledger: Ledger) -> None:
    work = make_work()
    ledger.register(work, work.to_body())
    assert ledger.acquire_lease(work.idempotency_key, "host-a:1", 3600)
    with ledger.engine.connect() as connection:
        heartbeat, expires = connection.execute(sa.select(WorkRow.lease_heartbeat_at, WorkRow.lease_expires_at)).one()
    assert (expires - heartbeat).total_seconds() == 3600
    assert abs((heartbeat - datetime.now(UTC).replace(tzinfo=None)).total_seconds()) < 5


# --- a database that cannot be used -------------------------------------------------------------------
def _made(tmp_path: Path, name: str = "ledger.sqlite") -> Path:
    path = tmp_path / name
    ledger = Ledger(f"sqlite:///{path}")
    ledger.register(make_work(), make_work().to_body())
    ledger.close()
    return path


def test_a_file_of_garbage_is_named_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(LedgerUnavailable) as caught:
        Ledger(f"sqlite:///{path}")
    assert str(caught.value) == f"ledger {path}: file is not a database"


def test_a_damaged_database_is_named_malformed(tmp_path: Path) -> None:
    path = _made(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[100:4096] = os.urandom(3996)  # the schema page after the 100-byte header
    path.write_bytes(bytes(raw))
    for wal in tmp_path.glob("ledger.sqlite-*"):
        wal.unlink()
    with pytest.raises(LedgerUnavailable) as caught:
        Ledger(f"sqlite:///{path}").works()
    assert str(caught.value) == f"ledger {path}: database disk image is malformed"


@pytest.fixture
def immutable_ledger(tmp_path: Path) -> Iterator[Path]:
    """A ledger file root cannot write either (``chattr +i``)."""
    path = _made(tmp_path)
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    assert made.returncode == 0, made.stderr
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_read_only_file_is_named_at_the_write_check_and_at_a_write(immutable_ledger: Path) -> None:
    ledger = Ledger(f"sqlite:///{immutable_ledger}")
    assert [r.work_rid for r in ledger.works()] == ["W1NLM4700"]  # reading still works: status is possible
    expected = f"ledger {immutable_ledger}: attempt to write a readonly database"
    with pytest.raises(LedgerUnavailable) as at_check:
        ledger.check_writable()
    with pytest.raises(LedgerUnavailable) as at_write:
        ledger.fail(make_work().idempotency_key, "transfer", "W1NLM4700: reset", permanent=False)
    assert str(at_check.value) == str(at_write.value) == expected


def test_a_read_only_connection_is_named_too(tmp_path: Path) -> None:
    path = _made(tmp_path)
    ledger = Ledger(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(LedgerUnavailable, match="attempt to write a readonly database"):
        ledger.check_writable()


def test_a_lock_held_by_another_process_is_waited_on_for_the_lock_timeout_only(ledger_url: str) -> None:
    made = Ledger(ledger_url)
    made.register(make_work(), make_work().to_body())
    made.close()
    ledger = Ledger(ledger_url, lock_timeout_s=0.5)
    holder = sa.create_engine(ledger_url, poolclass=sa.NullPool)
    with holder.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
        else:  # the row's lock, as another host's transaction in the middle of a lease would hold it
            connection.execute(sa.select(WorkRow.id).with_for_update())
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable) as caught:
            ledger.advance(make_work().idempotency_key, "restore_completed")
        waited = time.monotonic() - started
        connection.rollback()
    holder.dispose()
    location = ledger_url.removeprefix("sqlite:///")
    expected = ("database is locked" if ledger_url.startswith("sqlite")
                else "canceling statement due to lock timeout")
    assert str(caught.value).startswith(f"ledger {location}: locked by another process for 0.5 s ({expected}")
    assert 0.4 <= waited < 3
    assert ledger.advance(make_work().idempotency_key, "restore_completed").phase == "restore_completed"
    ledger.close()
