"""``finisher watch DIR``: the feeder, with real bag zips, the real de-bag and sync (``bin/syncOneWork.sh``) and a
real SQLite ledger; no AWS is called. The kill test runs the finisher as a separate process and SIGKILLs it.
``finisher run --watch DIR``: the same feeder beside the queue's slots, a process against a loopback moto server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from contract import archive_relpath_for_rid
from harness.bags import make_bdrc_bag_zip
from onprem.finisher.cli.app import app
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.logs import reset_logging
from onprem.finisher.work.intake import Intake, WatchSettings, sha256_of, watch_key
from tests.integration.moto_endpoint import CREDENTIALS
from tests.integration.worker_support import BUCKET, DLQ, QUEUE, REGION, environment, send, stage_object

REPO_ROOT = Path(__file__).resolve().parents[2]
RID, OTHER = "W1NLM4700", "W22084"


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "test-env.yaml"
    path.write_text(yaml.safe_dump(environment(tmp_path).model_dump(mode="json")))
    monkeypatch.setenv("BDRC_ENV_FILE", str(path))
    monkeypatch.setenv("FINISHER_MIN_FREE_BYTES", "0")
    monkeypatch.setenv("FINISHER_LOG_FORMAT", "json")
    yield path
    reset_logging()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


class MotoClients:
    """Just enough of AwsClients for ``stage_object`` and ``send``, on the moto server."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(self, service: str, region: str) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint)

    def s3(self, region: str) -> Any:
        return self.client("s3", region)


def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite'}")


def drop(tmp_path: Path, inbox: Path, rid: str = RID, **kwargs: int) -> Path:
    built = make_bdrc_bag_zip(tmp_path / "bags" / rid, rids=[rid], **kwargs)
    return Path(shutil.copy2(built, inbox / built.name))


def watch(inbox: Path, *args: str) -> object:
    return CliRunner().invoke(app, ["watch", str(inbox), "--drain", "--poll-seconds", "0.05", *args])


def synced_events(tmp_path: Path, rid: str) -> int:
    return sum(1 for row in ledger(tmp_path).works([rid]) for event in row.history if event["event"] == "synced")


def test_a_stable_zip_is_synced_moved_to_done_and_recorded_by_name_size_and_digest(
        tmp_path: Path, env_file: Path, inbox: Path) -> None:
    dropped = drop(tmp_path, inbox)
    key = watch_key(dropped.name, dropped.stat().st_size, sha256_of(dropped))
    result = watch(inbox, "--stable-seconds", "0")
    assert result.exit_code == 0, result.output
    assert f"{dropped.name}: synced {RID}" in result.stdout
    assert (tmp_path / "archive" / archive_relpath_for_rid(RID)).is_dir()
    assert (inbox / "done" / dropped.name).is_file() and not dropped.exists()
    size = (inbox / "done" / dropped.name).stat().st_size
    record = ledger(tmp_path).get(key)
    assert record is not None and (record.phase, record.source, record.size) == ("synced", "ingest", size)
    recorded = json.loads((tmp_path / "state" / "live" / f"{RID}.de-bag.json").read_text())  # for finisher top
    assert (recorded["kind"], recorded["finished"], recorded["files_done"]) == ("watch", True, 3)


def test_the_same_zip_dropped_again_is_not_synced_twice(tmp_path: Path, env_file: Path, inbox: Path) -> None:
    dropped = drop(tmp_path, inbox)
    kept = tmp_path / "again.zip"
    shutil.copy2(dropped, kept)
    assert watch(inbox, "--stable-seconds", "0").exit_code == 0
    shutil.copy2(kept, dropped)
    again = watch(inbox, "--stable-seconds", "0")
    assert again.exit_code == 0, again.output
    assert "not synced again" in again.stdout
    assert sorted(p.name for p in (inbox / "done").iterdir()) == [dropped.name, dropped.name + ".1"]
    assert synced_events(tmp_path, RID) == 1


def test_a_zip_still_being_copied_is_not_taken(tmp_path: Path, env_file: Path, inbox: Path) -> None:
    whole = make_bdrc_bag_zip(tmp_path / "bags", rids=[RID])
    partial = inbox / whole.name
    partial.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # no end of central directory yet
    result = watch(inbox, "--stable-seconds", "0")
    assert result.exit_code == 0, result.output
    assert partial.is_file() and not list((inbox / "done").iterdir()) and not list((inbox / "taking").iterdir())
    assert ledger(tmp_path).works([RID]) == []
    shutil.copy2(whole, partial)  # the copy completes
    assert watch(inbox, "--stable-seconds", "0").exit_code == 0
    assert (inbox / "done" / whole.name).is_file()


def test_a_zip_is_taken_only_after_its_size_and_mtime_held_for_stable_seconds(
        tmp_path: Path, env_file: Path, inbox: Path) -> None:
    dropped = drop(tmp_path, inbox)
    now = [0.0]
    taken: list[str] = []

    def ingest(path: Path, key: str) -> list[str]:
        taken.append(path.name)
        return [RID]

    intake = Intake(inbox, ledger(tmp_path), ingest, WatchSettings(stable_seconds=30, poll_seconds=0),
                    clock=lambda: now[0])
    with intake.locked():
        assert intake._ready() == ([], 1)
        now[0] = 29.0
        os.utime(dropped, ns=(time.time_ns(), time.time_ns() + 10**9))  # it changed: the wait starts again
        assert intake._ready() == ([], 1)
        now[0] = 58.0
        assert intake._ready() == ([], 1)
        now[0] = 59.5
        assert intake._ready() == ([dropped], 0)
        intake.run(threading.Event(), drain=True)
    assert taken == [dropped.name]


def test_a_done_marker_takes_a_zip_at_once(tmp_path: Path, env_file: Path, inbox: Path) -> None:
    dropped = drop(tmp_path, inbox)
    dropped.with_name(dropped.name + ".done").touch()
    result = watch(inbox, "--stable-seconds", "3600")
    assert result.exit_code == 0, result.output
    assert (inbox / "done" / dropped.name).is_file() and not dropped.with_name(dropped.name + ".done").exists()


def test_a_refused_zip_goes_to_failed_with_its_cause_beside_it_and_the_next_is_taken(
        tmp_path: Path, env_file: Path, inbox: Path) -> None:
    broken = inbox / "W1NLM4709.zip"
    broken.write_bytes(b"not a zip [/draft]")
    broken.with_name(broken.name + ".done").touch()  # marked complete: taken although it does not read
    good = drop(tmp_path, inbox, OTHER)
    result = watch(inbox, "--stable-seconds", "0")
    assert result.exit_code == 1, result.output
    assert "W1NLM4709.zip:" in result.stderr and "moved to failed/" in result.stderr
    assert (inbox / "failed" / broken.name).is_file()
    assert (inbox / "failed" / (broken.name + ".cause")).read_text().startswith("corrupt_zip\n")
    assert (inbox / "done" / good.name).is_file()
    [row] = ledger(tmp_path).works(["W1NLM4709"])
    assert (row.phase, row.last_cause) == ("failed", "corrupt_zip")


def test_a_second_watcher_of_the_folder_is_refused(tmp_path: Path, env_file: Path, inbox: Path) -> None:
    holder = Intake(inbox, ledger(tmp_path), lambda path, key: [])
    with holder.locked():
        result = watch(inbox)
    assert result.exit_code == 2
    assert "another finisher watch holds .watch.lock" in result.stderr


def _slow_sync_script(tmp_path: Path) -> tuple[Path, Path]:
    """A sync script that announces itself (its pid), waits, then runs the real one: a kill lands mid-sync."""
    started = tmp_path / "sync-started"
    script = tmp_path / "slow-sync.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {started}\nsleep 60\nexec {REPO_ROOT / 'bin' / 'syncOneWork.sh'} \"$@\"\n")
    script.chmod(0o755)
    return script, started


def _finisher(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "from onprem.finisher.cli.app import main; main()", *args],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def test_a_watcher_killed_mid_ingest_takes_the_zip_again_and_syncs_it_once(
        tmp_path: Path, env_file: Path, inbox: Path) -> None:
    dropped = drop(tmp_path, inbox)
    script, started = _slow_sync_script(tmp_path)
    env = {**os.environ, "FINISHER_SYNC_SCRIPT": str(script)}
    first = _finisher(["watch", str(inbox), "--stable-seconds", "0", "--poll-seconds", "0.1"], env)
    deadline = time.monotonic() + 60
    while not started.exists() or not started.read_text().strip():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the sync never started"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the finisher and its sync wrapper: nothing is left running
    first.wait(10)
    try:
        os.killpg(int(started.read_text()), signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert (inbox / "taking" / dropped.name).is_file()
    assert [row.phase for row in ledger(tmp_path).works([RID])] == ["debagged"]
    second = _finisher(["watch", str(inbox), "--stable-seconds", "0", "--poll-seconds", "0.1", "--drain"],
                       dict(os.environ))
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    assert f"{dropped.name}: synced {RID}" in out.decode()
    assert (inbox / "done" / dropped.name).is_file() and not list((inbox / "taking").iterdir())
    assert (tmp_path / "archive" / archive_relpath_for_rid(RID)).is_dir()
    assert synced_events(tmp_path, RID) == 1


def test_the_compose_example_runs_a_feeder_on_a_mounted_folder() -> None:
    compose = yaml.safe_load((REPO_ROOT / "onprem" / "finisher" / "compose.example.yml").read_text())
    feeder = compose["services"]["feeder"]
    assert feeder["command"][0] == "watch"
    mounts = {volume.split(":")[1]: volume for volume in feeder["volumes"]}
    assert feeder["command"][1] in mounts and not mounts[feeder["command"][1]].endswith(":ro")  # it moves zips
    assert {"/archive", "/staging", "/state"} <= set(mounts)
    assert feeder["image"] == compose["services"]["finisher"]["image"] and feeder["read_only"] is True


def test_run_drain_watch_takes_a_zip_completed_after_the_queues_drained_once_beside_a_queued_work(
        tmp_path: Path, env_file: Path, inbox: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``finisher run --drain --watch DIR`` as a process against a moto server: a queued work is synced through
    the slots while a zip is still being copied into DIR; the run does not end when the queues are drained but
    once the zip, completed after that, is synced once and moved to done/ (the folder has nothing left)."""
    clients = MotoClients(endpoint)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)  # the boto3 clients of this test and the finisher's
    s3, sqs = clients.s3(REGION), clients.client("sqs", REGION)
    # moto's state is the process's: another test of this process may have left messages in the same queues
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    s3.create_bucket(Bucket=BUCKET)
    sqs.create_queue(QueueName=DLQ)
    sqs.create_queue(QueueName=QUEUE)
    send(clients, stage_object(clients, make_bdrc_bag_zip(tmp_path / "bags" / RID, rids=[RID]), RID))  # type: ignore[arg-type]
    whole = make_bdrc_bag_zip(tmp_path / "bags" / OTHER, rids=[OTHER]).read_bytes()
    arriving = inbox / f"{OTHER}.bag.zip"
    arriving.write_bytes(whole[: len(whole) // 2])
    log = tmp_path / "run.log"
    # a grace period shorter than the copy: the drain waits for the folder whatever the grace (it cut the wait)
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "FINISHER_WAIT_TIME_SECONDS": "0",
           "FINISHER_DRAIN_IDLE_LIMIT": "5", "FINISHER_GRACE_PERIOD": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "-c", "from onprem.finisher.cli.app import main; main()", "run",
                                "--drain", "--watch", str(inbox), "--stable-seconds", "0.5"],
                               cwd=REPO_ROOT, env=env, stdout=out, stderr=out)
    copying = threading.Event()
    copying.set()

    def copy_goes_on() -> None:  # its mtime moves: never stable, so never taken while the copy goes on
        while copying.is_set():
            os.utime(arriving)
            time.sleep(0.1)

    copier = threading.Thread(target=copy_goes_on, daemon=True)
    copier.start()
    try:
        deadline = time.monotonic() + 60
        while "drained: all queues empty" not in log.read_text():
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert run.poll() is None, log.read_text()  # the queues are drained, the folder is not: still running
        refused = watch(inbox)
        assert refused.exit_code == 2 and "another finisher watch holds" in refused.stderr  # the run holds it
        time.sleep(1.5)  # longer than the grace period: the run still waits for the zip
        assert run.poll() is None, log.read_text()
        copying.clear()
        copier.join()
        arriving.write_bytes(whole)  # the copy completes
        assert run.wait(60) == 0, log.read_text()
    finally:
        copying.clear()
        run.kill()
    assert (inbox / "done" / arriving.name).is_file() and not arriving.exists()
    assert not list((inbox / "taking").iterdir()) and not list((inbox / "failed").iterdir())
    for rid in (RID, OTHER):
        assert (tmp_path / "archive" / archive_relpath_for_rid(rid)).is_dir()
        assert synced_events(tmp_path, rid) == 1
    assert f"{arriving.name}: synced {OTHER} (watched folder), moved to done/" in log.read_text()
    recorded = json.loads((tmp_path / "state" / "live" / f"{OTHER}.de-bag.json").read_text())  # for finisher top
    assert (recorded["kind"], recorded["finished"], recorded["files_done"]) == ("watch", True, 3)
