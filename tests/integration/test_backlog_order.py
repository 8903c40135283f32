"""The whole backlog in restore-expiry order (issue 15): hundreds of works sent in random order, two slots, the
ledger's index of queued works; copies the backlog will not reach in time are renewed on moto's S3. A backlog sent
while finishers run is started from its front on SQLite and PostgreSQL, with one finisher and two (issue 20)."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contract import RestoredWork, restore_state, staging_key_for_rid
from harness.postgres import PostgresCluster
from onprem.finisher.ledger.store import Ledger, WorkRecord
from onprem.finisher.work.backlog import RESTORE_RENEWED
from onprem.finisher.work.clients import AwsClients
from tests.integration.worker_support import (
    BUCKET,
    DLQ,
    REGION,
    FileStages,
    aws,
    make_worker,
    make_zip,
    queue_depth,
    queue_messages,
    send,
    stage_object,
    worker_settings,
)

__all__ = ["aws"]


def kendall_tau(order: list[str], expected: list[str]) -> float:
    """Kendall's tau-a of two orders of the same items (1: the same order, -1: reversed)."""
    place = {item: n for n, item in enumerate(expected)}
    ranks = [place[item] for item in order]
    pairs = len(ranks) * (len(ranks) - 1) // 2
    concordant = sum(1 for i in range(len(ranks)) for j in range(i + 1, len(ranks)) if ranks[i] < ranks[j])
    return (2 * concordant - pairs) / pairs


def staged_backlog(tmp_path: Path, clients: AwsClients, count: int,
                   expiry_of: Callable[[str], datetime]) -> list[RestoredWork]:
    """``count`` works staged on moto; ``expiry_of`` (called once all are staged) gives each message's expiry."""
    staged = []
    for n in range(count):
        rid = f"W1NLM{5000 + n}"
        staged.append(stage_object(clients, make_zip(tmp_path / "zips", rid, files=1), rid))
    return [work.model_copy(update={"restore_expiry": expiry_of(work.work_rid)}) for work in staged]


def _at(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def expiry_problems(records: dict[str, WorkRecord], expiry_of: dict[str, datetime]) -> list[str]:
    """From the ledger's recorded times, for each work: synced before its restored copy expired, or renewed
    before it expired (a ``restore_renewed`` note's time) and synced before the renewed copy's expiry."""
    problems = []
    for rid, expiry in sorted(expiry_of.items()):
        record = records.get(rid)
        if record is None or record.timestamps.get("synced") is None:
            problems.append(f"{rid}: never synced")
            continue
        synced = _at(record.timestamps["synced"])  # type: ignore[arg-type]
        renewals = [entry for entry in record.history if entry["event"] == RESTORE_RENEWED]
        if any(_at(entry["at"]) >= expiry for entry in renewals):
            problems.append(f"{rid}: renewed after its copy expired at {expiry.isoformat()}: {renewals}")
        if synced < expiry:
            continue
        if not renewals:
            problems.append(f"{rid}: synced at {synced.isoformat()}, its copy expired at {expiry.isoformat()}")
        elif synced >= _at(renewals[-1]["restore_expiry"]):
            problems.append(f"{rid}: synced at {synced.isoformat()}, after its renewed copy expired: {renewals}")
    return problems


def expired_in_order(order: list[str], sync_times: list[datetime], expiry_of: dict[str, datetime]) -> int:
    """How many works would have been synced after their copy expired, processed in ``order`` at the same
    sync times: what the backlog order saved."""
    return sum(1 for rid, synced in zip(order, sorted(sync_times), strict=True) if synced >= expiry_of[rid])


def test_a_backlog_of_200_in_random_order_is_processed_earliest_expiry_first(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, concurrency=2, backlog_prior_rate=36000, drain_idle_limit=30,
                               renew_margin_hours=0)
    rng = random.Random(15)
    rids = [f"W1NLM{5000 + n}" for n in range(200)]
    # in time only in order: from 20 s after the sends on, the n-th earliest ~4 s per turn later (the run needs
    # a turn in ~1.5 s on a loaded 2-core machine): a work taken in the sending (random) order expires
    expiry_of: dict[str, datetime] = {}
    works = staged_backlog(tmp_path, aws, 200, lambda rid: expiry_of.setdefault(
        rid, datetime.now(UTC) + timedelta(seconds=rng.uniform(20, 900))))
    rng.shuffle(works)
    for work in works:
        send(aws, work)
    stages = FileStages(settings, aws)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes["synced"] == 200
    processed = [rid for stage, rid in stages.events if stage == "sync"]
    expected = sorted(rids, key=lambda rid: expiry_of[rid])
    tau = kendall_tau(processed, expected)
    print(f"Kendall's tau, processing order against expiry order: {tau:.4f}")
    assert tau >= 0.95
    ledger = Ledger(settings.ledger_url)
    records = {record.work_rid: record for record in ledger.works()}
    assert expiry_problems(records, expiry_of) == []
    assert not any(entry["event"] == RESTORE_RENEWED for record in records.values() for entry in record.history)
    # the check bites (whatever the machine's speed): had each copy expired a second before its recorded sync,
    # every work is named
    early = {rid: _at(records[rid].timestamps["synced"]) - timedelta(seconds=1) for rid in expiry_of}  # type: ignore[arg-type]
    assert len(expiry_problems(records, early)) == 200
    # what the order saved, for the log only: how many depends on the machine's speed (none on a fast one)
    sync_times = [_at(record.timestamps["synced"]) for record in records.values()]  # type: ignore[arg-type]
    would_expire = expired_in_order([work.work_rid for work in works], sync_times, expiry_of)
    print(f"in the sending order, {would_expire} of 200 copies would have expired before their sync")
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0} and queue_messages(aws, DLQ) == []


def test_copies_the_backlog_cannot_reach_in_time_are_renewed(tmp_path: Path, aws: AwsClients) -> None:
    # ten works a second at most (the backlog's hides: the 30 queued works need ~3 s; at one a second the drain
    # idled ~20 s), a margin of 10 days makes the first 10 due
    settings = worker_settings(tmp_path, concurrency=2, backlog_prior_rate=36000, drain_idle_limit=30,
                               renew_margin_hours=240, renew_interval=0, backlog_lookahead=0)
    start = datetime.now(UTC)
    rids = [f"W1NLM{5000 + n}" for n in range(30)]
    expiry_of = {rid: start + timedelta(days=1 + n) for n, rid in enumerate(rids)}  # W1NLM5000 first
    works = staged_backlog(tmp_path, aws, 30, expiry_of.__getitem__)
    s3 = aws.s3(REGION)
    before = {rid: restore_state(s3.head_object(Bucket=BUCKET, Key=staging_key_for_rid(rid))).expiry for rid in rids}
    for work in reversed(works):
        send(aws, work)
    stages = FileStages(settings, aws)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes["synced"] == 30
    records = {record.work_rid: record for record in Ledger(settings.ledger_url).works()}
    renewed = {rid: [entry for entry in record.history if entry["event"] == RESTORE_RENEWED]
               for rid, record in records.items()}
    due = [rid for rid in rids if expiry_of[rid] < start + timedelta(days=10)]
    # a work a slot took before the first renewal pass is synced at once: it needs no renewal (2 slots, no look-ahead)
    not_renewed = [rid for rid in due if not renewed[rid]]
    assert len(due) == 9 and len(not_renewed) <= 2 and set(not_renewed) <= set(rids[:2]), not_renewed
    assert not any(renewed[rid] for rid in rids if expiry_of[rid] > start + timedelta(days=11))
    for rid in (rid for rid in due if renewed[rid]):
        entry = renewed[rid][0]
        assert entry["days"] >= 10 and entry["tier"] == "Bulk"
        after = restore_state(s3.head_object(Bucket=BUCKET, Key=staging_key_for_rid(rid))).expiry
        assert after is not None and before[rid] is not None and after > before[rid]  # moto took the RestoreObject
        assert _at(entry["restore_expiry"]) > expiry_of[rid]  # the ledger's renewed expiry: later than the message's
    assert expiry_problems(records, expiry_of) == []


def started_past_the_front(started: list[str], expiry_of: dict[str, datetime], front: int,
                           unranked: int) -> list[str]:
    """The works started, past the first ``unranked``, while ``front`` or more of ``expiry_of``'s works not yet
    started expired before them: the server ledger's bound (each start among the first ``slots +
    BACKLOG_LOOKAHEAD`` of the backlog left)."""
    left = sorted(expiry_of, key=expiry_of.__getitem__)
    problems = []
    for number, rid in enumerate(started):
        ahead = left.index(rid)
        if number >= unranked and ahead >= front:
            problems.append(f"{rid}: start {number}, with {ahead} works left that expire before it")
        left.remove(rid)
    return problems


def drain_a_backlog_sent_while_running(tmp_path: Path, aws: AwsClients, ledger_url: str, hosts: int,
                                       count: int = 30) -> tuple[list[str], dict[str, datetime]]:
    """``hosts`` finishers (2 slots each) on ``ledger_url`` drain one work, whose fetch sends a backlog of
    ``count`` in random order: their first scan saw a queue of one. Returns the backlog's starts, its expiries."""
    settings = worker_settings(tmp_path, ledger_url=ledger_url, concurrency=2, backlog_prior_rate=36000,
                               drain_idle_limit=5, renew_margin_hours=0)
    rng = random.Random(20)
    start = datetime.now(UTC)
    works = staged_backlog(tmp_path, aws, count + 1, lambda rid: start + timedelta(hours=rng.uniform(1, 100)))
    first, backlog = works[0], works[1:]
    rng.shuffle(backlog)
    stages = FileStages(settings, aws)

    def send_the_backlog(rid: str, ctx: object) -> None:
        if rid == first.work_rid:
            for work in backlog:
                send(aws, work)

    stages.before["fetch"] = send_the_backlog
    send(aws, first)
    workers = [make_worker(settings, aws, stages, ledger=Ledger(ledger_url), owner=f"host-{n}:1")
               for n in range(hosts)]
    with ThreadPoolExecutor(hosts) as pool:
        summaries = list(pool.map(lambda worker: worker.run(drain=True), workers))
    assert sum(summary.outcomes["synced"] for summary in summaries) == count + 1
    started = [rid for stage, rid in stages.events if stage == "fetch" and rid != first.work_rid]
    return started, {work.work_rid: work.restore_expiry for work in backlog}  # type: ignore[misc]


def test_a_backlog_sent_while_the_finisher_runs_is_started_from_its_front(tmp_path: Path, aws: AwsClients,
                                                                          ledger_url: str) -> None:
    """On PostgreSQL (a host's scan paced to once per 30 s) the backlog was started in the queue's order: the
    start's scan had seen a queue of one (Kendall's tau 0.05, 6 of 30 started past the front). Now a receive that
    brings a message never received before makes the next receive scan; only the works of that receive and of
    the next (a scan while the backlog is still arriving registers part of it) start unranked."""
    started, expiry_of = drain_a_backlog_sent_while_running(tmp_path, aws, ledger_url, hosts=1)
    front = 2 + 8  # the slots and the default look-ahead
    tau = kendall_tau(started, sorted(expiry_of, key=expiry_of.__getitem__))
    print(f"Kendall's tau, processing order against expiry order: {tau:.4f}")
    assert started_past_the_front(started, expiry_of, front, unranked=2 * 2) == []
    assert started_past_the_front(list(expiry_of), expiry_of, front, unranked=2 * 2)  # the sending order fails


def test_two_finishers_on_one_postgresql_ledger_start_a_backlog_sent_while_they_run_from_its_front(
        tmp_path: Path, aws: AwsClients, postgres_cluster: PostgresCluster) -> None:
    """Each host's first two receives of the backlog start unranked (its free slots, twice); after them every
    start is among the first slots + look-ahead of the works no host has leased, so of the backlog left with the
    other host's slots (its leases not yet started when this one starts), whichever host starts it."""
    started, expiry_of = drain_a_backlog_sent_while_running(tmp_path, aws, postgres_cluster.new_database(), hosts=2)
    tau = kendall_tau(started, sorted(expiry_of, key=expiry_of.__getitem__))
    print(f"Kendall's tau, processing order against expiry order: {tau:.4f}")
    assert started_past_the_front(started, expiry_of, 2 * 2 + 8, unranked=2 * 2 * 2) == []
