"""The pure part of the backlog's order: a work's rank, how long it is hidden, which copies are renewed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from contract import RestoredWork
from onprem.finisher.ledger.backlog import queued_works
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.queue.backlog import MIN_HIDE_S, hide_seconds, rank_among, renewal_days

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_rank_counts_the_queued_works_expiring_before() -> None:
    queued = [NOW + timedelta(hours=h) for h in (1, 2, 3, 5)]
    assert rank_among(NOW + timedelta(hours=4), queued) == 3
    assert rank_among(NOW, queued) == 0
    assert rank_among(None, queued) == 4  # an unknown expiry goes last


def test_a_work_among_the_first_the_host_may_hold_is_not_hidden() -> None:
    assert hide_seconds(rank=9, hold=10, rate_per_s=1.0, cap_s=41400) == 0


def test_a_work_further_back_is_hidden_until_shortly_before_its_turn() -> None:
    assert hide_seconds(rank=100, hold=10, rate_per_s=1.0, cap_s=41400) == 80  # 100 works ahead at 1/s, early


def test_a_hide_stays_within_the_visibility_cap_and_one_second() -> None:
    assert hide_seconds(rank=10**6, hold=10, rate_per_s=1.0, cap_s=41400) == 41400
    assert hide_seconds(rank=10, hold=10, rate_per_s=1000.0, cap_s=41400) == MIN_HIDE_S


def test_only_copies_the_backlog_will_not_reach_before_the_margin_are_renewed() -> None:
    # one work an hour: the third is reached after 3 h, the fourth after 4 h
    queued = [("a", NOW + timedelta(hours=30)), ("b", NOW + timedelta(hours=25)), ("c", NOW + timedelta(hours=26)),
              ("d", NOW + timedelta(days=5))]
    assert renewal_days(queued, NOW, 1 / 3600, timedelta(hours=24), 30) == [("b", 2), ("c", 2)]


def test_renewal_days_are_bounded() -> None:
    queued = [("a", NOW + timedelta(hours=1))]
    assert renewal_days(queued, NOW, 1e-9, timedelta(hours=24), 30) == [("a", 30)]


def _work(rid: str, expiry: datetime) -> RestoredWork:
    return RestoredWork.build(collection="NLM", bucket="staging.nlm", key=f"Archive0/00/{rid}/{rid}.bag.zip",
                              region="us-east-1", size=10, etag="abc", version_id="v1",
                              event_time=NOW, source_event_id="e1", restore_expiry=expiry)


def test_the_index_lists_queued_works_earliest_expiry_first_without_the_leased(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    now = datetime.now(UTC)
    for rid, hours in (("W1", 30), ("W2", 10), ("W3", 20)):
        work = _work(rid, now + timedelta(hours=hours))
        ledger.register(work, work.to_body())
    assert ledger.acquire_lease(_work("W3", now).idempotency_key, "host:1", 600)
    assert [w.work_rid for w in queued_works(ledger.engine, now, timedelta(hours=1))] == ["W2", "W1"]


def test_a_renewed_expiry_outlives_the_message_seen_again(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    work = _work("W1", NOW + timedelta(days=1))
    ledger.register(work, work.to_body())
    ledger.note(work.idempotency_key, "restore_renewed", restore_expiry=(NOW + timedelta(days=9)).isoformat())
    record = ledger.register(work, work.to_body())  # the same message, received again
    assert record.restore_expiry == (NOW + timedelta(days=9)).replace(tzinfo=None)
