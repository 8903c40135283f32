"""An error raised after the work reached the archive must not turn a synced work back into a retry or a DLQ entry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract import RestoredWork, staging_key_for_rid
from onprem.finisher.errors import TransferError, UnsafeArchive
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.work.runner import WorkRunner
from onprem.finisher.work.settings import load_settings


class _Queue:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def delete(self, message: Any) -> None:
        self.calls.append("delete")

    def to_dlq(self, *args: Any) -> None:
        self.calls.append("dlq")

    def set_visibility(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("visibility")


def _work() -> RestoredWork:
    return RestoredWork.build(collection="NLM", bucket="glacier.staging.nlm.dev.bdrc.org",
                              key=staging_key_for_rid("W1NLM4700"), region="ap-northeast-2", size=10, etag="abc",
                              event_time=datetime(2026, 11, 29, tzinfo=UTC), source_event_id="e1")


def _runner(tmp_path: Path) -> tuple[WorkRunner, Ledger, RestoredWork]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    work = _work()
    ledger.register(work, work.to_body(), message_id="m1")
    ledger.advance(work.idempotency_key, "synced", works=[work.work_rid])
    # real settings: the runner composes its restore waits and hook phase from them
    runner = WorkRunner(settings=load_settings(env_name="dev"), ledger=ledger, stages=None,  # type: ignore[arg-type]
                        metrics=None,  # type: ignore[arg-type]
                        s3_client_for=lambda region: None, progress_for=lambda *a: None, owner="test")
    return runner, ledger, work


def _events(ledger: Ledger, work: RestoredWork) -> list[str]:
    record = ledger.get(work.idempotency_key)
    assert record is not None
    return [entry["event"] for entry in record.history]


def test_retryable_error_after_sync_keeps_synced_and_deletes(tmp_path: Path) -> None:
    runner, ledger, work = _runner(tmp_path)
    queue = _Queue()
    outcome = runner._retry(queue, object(), work, TransferError(work.work_rid, "connection reset"))  # type: ignore[arg-type]
    assert outcome == "synced"
    assert queue.calls == ["delete"]
    assert _events(ledger, work)[-1] == "synced"
    assert ledger.get(work.idempotency_key).phase == "synced"  # type: ignore[union-attr]


def test_permanent_error_after_sync_never_reaches_the_dlq(tmp_path: Path) -> None:
    runner, ledger, work = _runner(tmp_path)
    queue = _Queue()
    outcome = runner._fail(queue, object(), work, UnsafeArchive(work.work_rid, "late"))  # type: ignore[arg-type]
    assert outcome == "synced"
    assert "dlq" not in queue.calls
    assert _events(ledger, work)[-1] == "synced"


def test_ledger_never_records_a_failure_on_a_synced_work(tmp_path: Path) -> None:
    _, ledger, work = _runner(tmp_path)
    for permanent in (False, True):
        record = ledger.fail(work.idempotency_key, "lease_lost", "late", permanent=permanent)
        assert record.phase == "synced"
    assert _events(ledger, work)[-1] == "synced"


def test_lease_lost_after_sync_deletes_the_message(tmp_path: Path) -> None:
    runner, ledger, work = _runner(tmp_path)
    queue = _Queue()
    assert runner._interrupted(queue, object(), work, "lease_lost") == "synced"  # type: ignore[arg-type]
    assert queue.calls == ["delete"]
    assert _events(ledger, work)[-1] == "synced"
