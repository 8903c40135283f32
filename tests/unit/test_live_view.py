"""The live view's read model (``work/live_view.py``) on a real SQLite ledger and real progress files written by
``progress.RecordedProgress``; the frame ``finisher top`` prints (``cli/top.render``) as plain text."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from contract import RestoredWork
from contract.keys import staging_key_for_rid
from onprem.finisher.cli.top import duration, human_bytes, render
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.progress import CountingProgress, RecordedProgress, live_file, recording
from onprem.finisher.work.live_view import live_dir, read_snapshot

NOW = datetime.now(UTC)
OWNER = f"{socket.gethostname()}:{os.getpid()}/0a1b2c3d"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def work(rid: str, expiry_days: float) -> RestoredWork:
    return RestoredWork.build(collection="NLM", bucket="staging", key=staging_key_for_rid(rid), region="us-east-1",
                              size=3 << 20, etag="e" * 32, event_time=NOW, source_event_id=f"event-{rid}",
                              restore_expiry=NOW + timedelta(days=expiry_days))


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def registered(ledger: Ledger, rid: str, expiry_days: float) -> RestoredWork:
    restored = work(rid, expiry_days)
    ledger.register(restored, restored.to_body())
    return restored


def recorded(tmp_path: Path, rid: str, label: str, clock: Clock) -> RecordedProgress:
    return RecordedProgress(CountingProgress(), live_file(live_dir(tmp_path), rid, label), rid, label,
                            clock=clock, wall=lambda: clock.now + 1.7e9)


def test_a_leased_work_shows_its_running_stages_and_the_downloads_bytes_rate_and_eta(
        tmp_path: Path, ledger: Ledger) -> None:
    restored = registered(ledger, "W1NLM4700", 3)
    assert ledger.acquire_lease(restored.idempotency_key, OWNER, 60)
    clock = Clock()
    progress = recorded(tmp_path, "W1NLM4700", "download", clock)
    progress.start(4 << 20, 1)
    clock.now += 1
    progress.advance(1 << 20)
    clock.now += 2
    progress.advance(1 << 20)  # 1 MiB in 2 s since the last write
    clock.now -= 5  # the de-bag on the arriving bytes, started first: the download's counts are still shown
    recorded(tmp_path, "W1NLM4700", "de-bag", clock).start(4 << 20, 8)
    [slot] = read_snapshot(ledger, live_dir(tmp_path), now=NOW).slots
    assert (slot.work_rid, slot.phase, slot.doing, slot.owner) == (
        "W1NLM4700", "received", "download + de-bag", OWNER)
    assert slot.stage is not None and (slot.stage.bytes_done, slot.stage.total_bytes) == (2 << 20, 4 << 20)
    assert slot.stage.rate_bytes_per_s == pytest.approx(0.5 * (1 << 20) + 0.5 * (1 << 19))
    assert slot.stage.eta_s == pytest.approx((2 << 20) / slot.stage.rate_bytes_per_s)


def test_progress_is_written_at_most_once_a_second_and_always_at_the_finish(tmp_path: Path) -> None:
    clock = Clock()
    progress = recorded(tmp_path, "W22084", "de-bag", clock)
    path = live_file(live_dir(tmp_path), "W22084", "de-bag")
    progress.start(1000, 10)
    for _ in range(50):
        clock.now += 0.01
        progress.advance(10, 1)
    assert json.loads(path.read_text())["bytes_done"] == 0  # the advances of the first second are not written
    clock.now += 1
    progress.advance(10, 1)
    assert json.loads(path.read_text())["bytes_done"] == 510
    progress.finish()
    assert json.loads(path.read_text())["finished"] is True
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left beside it


def test_a_progress_file_of_another_process_or_a_finished_stage_is_not_the_slots_stage(
        tmp_path: Path, ledger: Ledger) -> None:
    restored = registered(ledger, "W1NLM4700", 3)
    ledger.advance(restored.idempotency_key, "restore_completed")
    assert ledger.acquire_lease(restored.idempotency_key, f"{socket.gethostname()}:1/ffff0000", 60)
    clock = Clock()
    recorded(tmp_path, "W1NLM4700", "download", clock).start(100, 1)  # this process, not the lease holder
    [slot] = read_snapshot(ledger, live_dir(tmp_path), now=NOW).slots
    assert (slot.stage, slot.doing) == (None, "download")  # the step after restore_completed, from the ledger
    ledger.release_lease(restored.idempotency_key, f"{socket.gethostname()}:1/ffff0000")
    assert ledger.acquire_lease(restored.idempotency_key, OWNER, 60)
    done = recorded(tmp_path, "W1NLM4700", "download", clock)
    done.start(100, 1)
    done.finish()
    [slot] = read_snapshot(ledger, live_dir(tmp_path), now=NOW).slots
    assert slot.stage is None


def test_a_watched_zip_being_taken_is_a_slot_while_its_progress_is_fresh_and_unfinished(
        tmp_path: Path, ledger: Ledger) -> None:
    folder = live_dir(tmp_path)
    taking = RecordedProgress(CountingProgress(), live_file(folder, "W22084", "de-bag"), "W22084", "de-bag",
                              kind="watch")
    taking.start(12288, 3)
    [slot] = read_snapshot(ledger, folder).slots
    assert (slot.work_rid, slot.phase, slot.doing, slot.stage and slot.stage.kind) == (
        "W22084", "ingest", "de-bag", "watch")
    assert read_snapshot(ledger, folder, now=datetime.now(UTC) + timedelta(minutes=1)).slots == []  # not fresh
    taking.finish()
    assert read_snapshot(ledger, folder).slots == []


def test_the_backlog_is_by_restore_expiry_without_the_leased_and_failures_are_latest_first(
        tmp_path: Path, ledger: Ledger) -> None:
    late, early, leased = registered(ledger, "W22084", 9), registered(ledger, "W1NLM4701", 2), registered(
        ledger, "W1NLM4700", 1)
    assert ledger.acquire_lease(leased.idempotency_key, OWNER, 60)
    ledger.fail(late.idempotency_key, "transfer", "W22084: connection reset", permanent=False)
    ledger.fail(early.idempotency_key, "corrupt_zip", "W1NLM4701: unreadable zip", permanent=True)
    snapshot = read_snapshot(ledger, live_dir(tmp_path), now=NOW, backlog_limit=1)
    assert [e.work_rid for e in snapshot.backlog] == ["W22084"] and snapshot.backlog_total == 1  # early: failed
    assert snapshot.backlog[0].hours_left == pytest.approx(9 * 24, abs=0.01)
    assert [(f.work_rid, f.phase, f.cause) for f in snapshot.failures] == [
        ("W1NLM4701", "failed", "corrupt_zip"), ("W22084", "received", "transfer")]
    assert snapshot.phases == {"received": 2, "failed": 1}


def test_the_frame_prints_names_and_messages_with_brackets_as_they_are(tmp_path: Path, ledger: Ledger) -> None:
    restored = registered(ledger, "W1NLM4701", 2)
    ledger.fail(restored.idempotency_key, "unsafe_zip", "W1NLM4701: member ../[b]x[/draft].tif escapes the work "
                                                        "folder", permanent=True)
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    console.print(render(read_snapshot(ledger, live_dir(tmp_path), now=NOW)))
    text = console.export_text()
    assert "../[b]x[/draft].tif escapes" in text
    assert "unsafe_zip" in text and "0 in slots" in text and "1 failed" in text


def test_one_snapshot_as_json_carries_the_stage_and_its_eta(tmp_path: Path, ledger: Ledger) -> None:
    restored = registered(ledger, "W1NLM4700", 3)
    assert ledger.acquire_lease(restored.idempotency_key, OWNER, 60)
    clock = Clock()
    progress = recorded(tmp_path, "W1NLM4700", "download", clock)
    progress.start(300, 1)
    clock.now += 1
    progress.advance(100)
    document = json.loads(json.dumps(read_snapshot(ledger, live_dir(tmp_path), now=NOW).as_json()))
    [slot] = document["slots"]
    assert slot["stage"]["bytes_done"] == 100 and slot["stage"]["eta_s"] == pytest.approx(2.0)
    assert document["at"] == NOW.isoformat() and document["backlog_total"] == 0


def test_the_recorder_removes_progress_files_untouched_for_a_day(tmp_path: Path) -> None:
    folder = live_dir(tmp_path)
    folder.mkdir()
    old = folder / "W22084.download.json"
    old.write_text("{}")
    os.utime(old, (0, 0))
    recording(lambda label, rid: CountingProgress(), folder)("download", "W1NLM4700").start(1, 1)
    assert sorted(p.name for p in folder.iterdir()) == ["W1NLM4700.download.json"]


def test_bytes_and_durations_read_as_a_person_says_them() -> None:
    assert [human_bytes(n) for n in (512, 1536, 5 << 20, 3 << 30)] == ["512 B", "1.5 KiB", "5.0 MiB", "3.0 GiB"]
    assert [duration(s) for s in (None, 45, 185, 7620)] == ["", "45s", "3m05s", "2h07m"]
