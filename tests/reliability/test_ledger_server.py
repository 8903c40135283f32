"""The ledger shared by several hosts: processes racing for the same leases, and a PostgreSQL restarted mid-run.

Two real processes (``spawn``: nothing shared but the database) race for 40 works' leases at one barrier, half of
them held by a host whose lease has expired: each lease has exactly one winner. The restart is the session
cluster's own ``pg_ctl stop -m fast`` (every session ended, as in a server restart or failover) and ``start``:
the ledger's calls made while it is away wait with backoff and go through once it is back, bounded by the
ledger's ``lock_timeout_s``; nothing is lost or recorded twice.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from contract import RestoredWork
from onprem.finisher.errors import LedgerUnavailable
from onprem.finisher.ledger.models import Phase
from onprem.finisher.ledger.store import Ledger
from tests.ledger_backends import PostgresCluster

WORKS = 40


def make_work(number: int) -> RestoredWork:
    rid = f"W1NLM{number:04d}"
    return RestoredWork.build(collection="NLM", bucket="staging.nlm", key=f"Archive0/00/{rid}/{rid}.bag.zip",
                              region="us-east-1", size=10, etag="abc", version_id="v1",
                              event_time=datetime(2026, 11, 29, tzinfo=UTC), source_event_id=f"e{number}")


def race_for_leases(url: str, owner: str, keys: list[str], barrier: object, won: object) -> None:
    """One host: at the barrier, try to take every lease, in the same order as its rival."""
    ledger = Ledger(url)
    barrier.wait()  # type: ignore[attr-defined]
    won.put((owner, [key for key in keys if ledger.acquire_lease(key, owner, 600)]))  # type: ignore[attr-defined]
    ledger.close()


def test_two_processes_racing_for_the_same_leases_have_one_winner_each(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    keys = []
    for number in range(WORKS):
        work = make_work(number)
        ledger.register(work, work.to_body())
        if number % 2:  # a host that died with the lease: expired, free to take over
            assert ledger.acquire_lease(work.idempotency_key, "dead-host:1", -1)
        keys.append(work.idempotency_key)
    spawn = multiprocessing.get_context("spawn")
    barrier, won = spawn.Barrier(2, timeout=60), spawn.Queue()
    hosts = [spawn.Process(target=race_for_leases, args=(ledger_url, f"host-{h}:1", keys, barrier, won))
             for h in "ab"]
    for host in hosts:
        host.start()
    results = dict(won.get(timeout=120) for _ in hosts)
    for host in hosts:
        host.join(timeout=30)
    assert [host.exitcode for host in hosts] == [0, 0]
    assert set(results["host-a:1"]).isdisjoint(results["host-b:1"])
    assert sorted(results["host-a:1"] + results["host-b:1"]) == sorted(keys)
    owners = {record.idempotency_key: record.lease_owner for record in ledger.works()}
    assert all(owners[key] == ("host-a:1" if key in results["host-a:1"] else "host-b:1") for key in keys)
    ledger.close()


@pytest.fixture
def cluster(postgres_cluster: PostgresCluster) -> Iterator[PostgresCluster]:
    """The session's cluster, running again after the test whatever happened in it."""
    yield postgres_cluster
    if not _answers(postgres_cluster):
        postgres_cluster.start()


def _answers(cluster: PostgresCluster) -> bool:
    try:
        Ledger(cluster.url(), lock_timeout_s=0.2).close()
    except LedgerUnavailable:
        return False
    return True


def test_a_postgresql_restarted_mid_run_loses_and_doubles_nothing(cluster: PostgresCluster) -> None:
    url = cluster.new_database()
    ledger = Ledger(url)
    work = make_work(1)
    ledger.register(work, work.to_body())
    assert ledger.acquire_lease(work.idempotency_key, "host-a:1", 600)
    ledger.advance(work.idempotency_key, Phase.DOWNLOADED)

    cluster.stop()  # every pooled connection of the ledger is dead now
    restart = threading.Timer(1.0, cluster.start)
    restart.start()
    started = time.monotonic()
    assert ledger.renew_lease(work.idempotency_key, "host-a:1", 600)  # waits for the server, then goes through
    waited = time.monotonic() - started
    restart.join()

    ledger.advance(work.idempotency_key, Phase.DEBAGGED)
    assert not ledger.acquire_lease(work.idempotency_key, "host-b:1", 600)  # the lease survived the restart
    ledger.advance(work.idempotency_key, Phase.SYNCED)
    record = ledger.get(work.idempotency_key)
    assert record is not None and record.lease_owner == "host-a:1"
    assert [entry["event"] for entry in record.history] == ["received", "downloaded", "debagged", "synced"]
    assert 0.9 <= waited < 10
    ledger.close()


def test_a_postgresql_away_longer_than_the_budget_is_named_within_it(cluster: PostgresCluster) -> None:
    url = cluster.new_database()
    ledger = Ledger(url, lock_timeout_s=1.0)
    ledger.register(make_work(1), make_work(1).to_body())
    cluster.stop()
    started = time.monotonic()
    try:
        with pytest.raises(LedgerUnavailable) as caught:
            ledger.works()
        waited = time.monotonic() - started
    finally:
        cluster.start()
    assert str(caught.value).startswith(f"ledger {url}: ")
    assert "\n" not in str(caught.value).strip()
    assert 0.5 <= waited < 6
    assert [r.work_rid for r in ledger.works()] == ["W1NLM0001"]  # back: the same ledger goes on
    ledger.close()


def _lose_the_next_commit(ledger: Ledger, *, written: bool) -> list[str]:
    """The ledger's next COMMIT ends with its connection closed under it: after the server wrote it (the reply
    lost) or before (the server rolls it back). The list returned names each COMMIT so lost."""
    dialect, lost = ledger.engine.dialect, []
    real_commit = dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        if lost:
            return real_commit(dbapi_connection)
        if written:
            real_commit(dbapi_connection)
        lost.append("written" if written else "rolled back")
        getattr(dbapi_connection, "dbapi_connection", dbapi_connection).close()  # the driver's, under the pool's
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    return lost


@pytest.mark.parametrize("written", [True, False], ids=["written", "rolled-back"])
def test_a_commit_lost_with_its_connection_is_read_back_and_recorded_once(cluster: PostgresCluster,
                                                                          written: bool) -> None:
    """Before: LedgerUnavailable 'connection lost at commit, outcome unknown', and the finisher ended (exit 1)."""
    ledger = Ledger(cluster.new_database())
    work = make_work(1)
    key = work.idempotency_key
    ledger.register(work, work.to_body())
    calls = [lambda: ledger.advance(key, Phase.DOWNLOADED, bytes=10),
             lambda: ledger.note(key, "released", owner="host-a:1"),
             lambda: ledger.fail(key, "s3_throttled", "slow down", permanent=False),
             lambda: ledger.record_rejected("{not json", None, "invalid_message", "not JSON"),
             lambda: ledger.reset_for_retry(key)]
    for call in calls:
        lost = _lose_the_next_commit(ledger, written=written)
        call()
        assert lost == ["written" if written else "rolled back"]
    record = ledger.get(key)
    assert record is not None
    assert [entry["event"] for entry in record.history] == ["received", "downloaded", "released", "retry",
                                                            "requeued"]
    assert record.attempts == 1 and record.phase == Phase.DOWNLOADED
    rejected = [r for r in ledger.works() if r.source == "rejected"]
    assert [(r.attempts, [e["event"] for e in r.history]) for r in rejected] == [(1, ["failed"])]
    ledger.close()


def test_a_lease_call_lost_at_commit_is_run_again_and_finds_what_it_did(cluster: PostgresCluster) -> None:
    ledger = Ledger(cluster.new_database())
    work = make_work(1)
    ledger.register(work, work.to_body())
    _lose_the_next_commit(ledger, written=True)
    assert ledger.acquire_lease(work.idempotency_key, "host-a:1", 600)  # run again: the lease is already ours
    _lose_the_next_commit(ledger, written=True)
    assert ledger.renew_lease(work.idempotency_key, "host-a:1", 600)
    assert not ledger.acquire_lease(work.idempotency_key, "host-b:1", 600)
    ledger.close()


def test_the_backlog_index_reads_wait_for_a_restarted_postgresql(cluster: PostgresCluster) -> None:
    """Before: the backlog's renewal pass read the queued works on a bare connection, and a PostgreSQL restart
    during it ended the finisher with an OperationalError (exit 1, tests/hosts in a clean-clone make test)."""
    ledger = Ledger(cluster.new_database())
    work = RestoredWork.build(collection="NLM", bucket="staging.nlm", key="Archive0/01/W1NLM0001/W1NLM0001.bag.zip",
                              region="us-east-1", size=10, etag="abc", version_id="v1",
                              event_time=datetime(2026, 11, 29, tzinfo=UTC), source_event_id="e1",
                              restore_expiry=datetime(2026, 12, 30, tzinfo=UTC))
    ledger.register(work, work.to_body())
    ledger.queued_works(datetime.now(UTC), timedelta(days=400))  # the pool holds a connection the stop kills
    cluster.stop()
    restart = threading.Timer(1.0, cluster.start)
    restart.start()
    try:
        queued = ledger.queued_works(datetime.now(UTC), timedelta(days=400))
        rate = ledger.synced_per_second(datetime.now(UTC), timedelta(hours=1))
    finally:
        restart.join()
    assert [w.work_rid for w in queued] == ["W1NLM0001"] and rate is None
    ledger.close()
