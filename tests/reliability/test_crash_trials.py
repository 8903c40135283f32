"""Crash trials: ``finisher run --drain`` as a separate process, SIGKILLed at each checkpoint, restarted, drained.

After every trial: each work in the archive once and equal to its manifests, nothing half-written or stale beside
it, no message left (none in the DLQ), no orphan temp file in staging, the ledger says ``synced`` and its history
shows one sync; the success list names the work exactly once. The default run kills at every checkpoint once and
draws two trials under production conditions (a SIGTERM of a real slowed rsync, a restore still in progress for a
few checks, a hook failing once); ``pytest --run-long`` adds ≥ 50 randomized trials (kill point, n-th hit, timing
and conditions drawn from a printed seed: ``RELIABILITY_SEED=<seed>`` replays them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from contract.keys import archive_relpath_for_rid
from onprem.finisher.work.faults import AFTER_RECEIVE, BEFORE_DELETE, MID_DOWNLOAD, MID_EXTRACT, MID_SYNC
from tests.reliability.faults import kill_at, kill_tree, wait_for, write_rsync_shim
from tests.reliability.harness import Bench, StagedWork, spec, sync_count, trial_bench

#: checkpoints inside the finisher (MID_SYNC: the sync stage entered, the script not started yet)
IN_PROCESS_CHECKPOINTS = (AFTER_RECEIVE, MID_DOWNLOAD, MID_EXTRACT, MID_SYNC, BEFORE_DELETE)
MID_RSYNC = "mid_rsync"
#: SIGTERM to the finisher alone while a real (slowed) rsync writes the archive copy: a stop, then a restart
SIGTERM_MID_RSYNC = "sigterm_mid_rsync"
#: no stop at all: the conditions alone
NO_STOP = "no_stop"
#: one segment: the whole zip in one ranged GET on one connection (the default: several segments in flight)
STREAM = {"FINISHER_FETCH_PART_SIZE": str(2**40), "FINISHER_FETCH_CONCURRENCY": "1"}
MODES = {"overlapped": None, "stream": STREAM}
RANDOM_TRIALS = int(os.environ.get("RELIABILITY_TRIALS", "50"))
#: trials under production conditions in the default run (each 15-20 s on two shared, loaded cores)
DEFAULT_PRODUCTION_TRIALS = 2
#: the sync's process group past the grace: SIGKILL this soon after its SIGTERM (10 s in production)
TRIAL_TERMINATE_TIMEOUT = {"FINISHER_SYNC_TERMINATE_TIMEOUT": "3"}


@dataclass(frozen=True)
class Conditions:
    """Production conditions of one trial: HEAD reports the restore still in progress for its first
    ``restore_checks`` checks (the work waits as delayed continuations, a check a second), and the post-sync hook
    fails its first ``hook_failures`` runs (retried alone)."""

    restore_checks: int = 0
    hook_failures: int = 0

    def faults(self) -> list[dict[str, object]]:
        return [{"kind": "restore_ongoing", "times": self.restore_checks}] if self.restore_checks else []

    def env(self, calls: Path) -> dict[str, str]:
        if not self.hook_failures:
            return {}
        hook = ["sh", "-c", f'echo {{work_rid}} >> "{calls}"; test "$(wc -l < "{calls}")" -gt {self.hook_failures}']
        return {"FINISHER_POST_SYNC_HOOK": json.dumps(hook)}

    def __str__(self) -> str:
        return f"restore checks {self.restore_checks}, hook failures {self.hook_failures}"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with trial_bench(tmp_path) as running:
        yield running


def _syncing_copy_has_files(bench: Bench, rid: str) -> bool:
    parent = bench.paths.archive_root / archive_relpath_for_rid(rid).parent
    return any(p.is_file() for d in parent.glob(f".{rid}.syncing.*") for p in d.rglob("*"))


def _stop_mid_rsync(bench: Bench, rid: str, mode: dict[str, str], faults: list[dict[str, object]], *,
                    sigterm: bool = False, deadline_s: float = 60.0) -> int:
    """Run the drain with a slow rsync (copy mode) and, mid-transfer, SIGKILL the finisher and its children, or
    (``sigterm``) SIGTERM the finisher alone and let it stop its sync's process group; returns its exit code."""
    shim_dir = bench.scratch / "slow-rsync"
    write_rsync_shim(shim_dir, bench.scratch / "rsync-calls.txt", bwlimit_kib=32)
    process = bench.start(["run", "--drain"],
                          env={**mode, "PATH": f"{shim_dir}:{os.environ['PATH']}", "SYNC_FORCE_COPY": "1"},
                          faults=faults)
    try:
        wait_for(lambda: _syncing_copy_has_files(bench, rid) or process.poll() is not None, deadline_s,
                 f"{rid}: rsync writing into the archive")
        assert process.poll() is None, f"the finisher ended ({process.returncode}) before rsync could be cut"
        if sigterm:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        else:
            kill_tree(process.pid)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    return process.returncode


def _no_half_written_work(bench: Bench, works: list[StagedWork]) -> list[str]:
    """Right after a kill: a work's archive folder is absent or complete (never partial)."""
    return [problem for problem in bench.archive_problems(works)
            if "not in the archive" not in problem and "syncing" not in problem and "previous" not in problem]


def _trial(bench: Bench, kill: str, *, nth: int = 1, after_s: float | None = None,
           mode: dict[str, str] | None = None, conditions: Conditions = Conditions()) -> tuple[int, list[str]]:
    """Stage one work, stop the finisher as asked (its faults: the ``conditions``), restart and drain (both with
    the settings ``mode`` and the conditions' hook); returns the stop's exit code and the problems found."""
    calls = bench.scratch / "hook-calls.txt"
    mode = {**(mode or {}), **TRIAL_TERMINATE_TIMEOUT, **conditions.env(calls)}
    faults = conditions.faults()
    work = bench.stage(spec("W1NLM4700"))
    if kill in (MID_RSYNC, SIGTERM_MID_RSYNC):
        code = _stop_mid_rsync(bench, work.work_rid, mode, faults, sigterm=kill == SIGTERM_MID_RSYNC)
    elif after_s is not None:
        process = bench.start(["run", "--drain"], env=mode, faults=faults)
        try:
            process.wait(timeout=after_s)
        except subprocess.TimeoutExpired:  # still running at the drawn moment: kill it there
            kill_tree(process.pid)
        code = process.wait(timeout=30)
    else:
        code = bench.run(["run", "--drain"], env={**mode, **({} if kill == NO_STOP else kill_at(kill, nth))},
                         faults=faults)
    problems = _no_half_written_work(bench, [work])
    final = bench.drain_until_quiet(env=mode)
    if final != 0:
        problems.append(f"the restarted drain exited {final}")
    problems += bench.problems([work])
    # even a kill at a random moment (between the copy in place and the marker, or after the script's exit and
    # before the ledger heard of it) never syncs twice: the marker is written before the success line
    syncs = sync_count(bench, work.work_rid)
    if syncs != 1:
        problems.append(f"{work.work_rid}: syncOneWork.sh reported {syncs} syncs, expected exactly 1")
    return code, problems + _condition_problems(bench, work.work_rid, conditions, calls,
                                                waits_all=kill != AFTER_RECEIVE and after_s is None)


def _condition_problems(bench: Bench, rid: str, conditions: Conditions, calls: Path, *,
                        waits_all: bool) -> list[str]:
    """The conditions' traces in the ledger: one ``restore_wait`` per check that found the restore running (all
    of them unless the stop came before the first check: the restart has no faults), no retry or failure spent
    on waiting; the hook's last run succeeded, each failure recorded, nothing synced again for it."""
    history = bench.status().get(rid, {}).get("history", [])
    events = [entry.get("event") for entry in history]
    problems = []
    waits = events.count("restore_wait")
    if waits > conditions.restore_checks or (waits_all and waits != conditions.restore_checks):
        problems.append(f"{waits} restore_wait entries for {conditions.restore_checks} checks in progress: {events}")
    if conditions.restore_checks and any(e.get("cause") == "restore_in_progress" and e.get("event") != "restore_wait"
                                         for e in history):
        problems.append(f"a restore in progress counted as a failure: {events}")
    hooks = [e for e in events if e in ("hook_failed", "hook_ok")]
    if conditions.hook_failures:
        ran = len(calls.read_text().split()) if calls.is_file() else 0
        if not hooks or hooks[-1] != "hook_ok" or hooks.count("hook_failed") > conditions.hook_failures:
            problems.append(f"hook history {hooks} for a hook failing {conditions.hook_failures} time(s): {events}")
        if ran < conditions.hook_failures + 1:
            problems.append(f"the hook ran {ran} time(s), expected at least {conditions.hook_failures + 1}")
    elif hooks:
        problems.append(f"hook entries without a hook: {events}")
    return problems


@pytest.mark.parametrize("checkpoint", IN_PROCESS_CHECKPOINTS)
def test_killed_at_checkpoint_then_restarted_archives_the_work_once(bench: Bench, checkpoint: str) -> None:
    code, problems = _trial(bench, checkpoint)
    assert code == -signal.SIGKILL, f"the finisher was not killed at {checkpoint} (exit {code}): never reached?"
    assert problems == []


@pytest.mark.parametrize("checkpoint", [MID_DOWNLOAD, MID_EXTRACT])
def test_killed_at_the_second_hit_of_the_fetch_then_restarted_archives_the_work_once(
    bench: Bench, checkpoint: str,
) -> None:
    """The same kills further into the one fetch + de-bag (its second hit: some bytes already verified)."""
    code, problems = _trial(bench, checkpoint, nth=2)
    assert code == -signal.SIGKILL, f"the finisher was not killed at {checkpoint}:2 (exit {code}): never reached?"
    assert problems == []


@pytest.mark.parametrize("checkpoint", [MID_DOWNLOAD, MID_EXTRACT, BEFORE_DELETE])
def test_killed_while_reading_the_object_as_one_range_then_restarted_archives_the_work_once(
        bench: Bench, checkpoint: str) -> None:
    """The same kills when the whole object is one segment (one ranged GET, ``STREAM``'s settings): the retry
    reads it again."""
    code, problems = _trial(bench, checkpoint, mode=STREAM)
    assert code == -signal.SIGKILL, f"the finisher was not killed at {checkpoint} (exit {code}): never reached?"
    assert problems == []
    assert "de-bagged on the way, the zip not kept" in (bench.paths.root / "finisher.log").read_text()
    assert not list(bench.paths.staging_dir.rglob("*.bag.zip*")), "a zip file outlived the work"


def test_killed_mid_rsync_then_restarted_archives_the_work_once(backend_bench: Bench) -> None:
    bench = backend_bench  # the ledger on the id's backend: claims, leases, a restart
    code, problems = _trial(bench, MID_RSYNC)
    assert code == -signal.SIGKILL
    assert problems == []


def _production_draw(rng: random.Random, number: int) -> tuple[str, int, Conditions]:
    """A stop and conditions: the even trials SIGTERM a real slowed rsync with a hook failing once, the odd ones
    SIGKILL at a checkpoint (its n-th hit) with a hook failing once or not; a restore in progress for 1 or 2
    checks in both (the long trials draw up to 3)."""
    conditions = Conditions(restore_checks=rng.randint(1, 2), hook_failures=rng.choice((0, 1)))
    if number % 2 == 0:
        return SIGTERM_MID_RSYNC, 1, replace(conditions, hook_failures=1)
    checkpoint = rng.choice(IN_PROCESS_CHECKPOINTS)
    return checkpoint, rng.randint(1, 2) if checkpoint in (MID_DOWNLOAD, MID_EXTRACT) else 1, conditions


def test_stops_under_production_conditions_drawn_from_a_seed_keep_every_invariant(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGTERM during a real slowed rsync and a SIGKILL at a drawn checkpoint, each with a restore still in
    progress for a few checks and a hook failing once (drawn): archived once, listed once, no message lost,
    the waits and the hook's failures in the history; the seed is printed (``RELIABILITY_SEED`` replays it)."""
    seed = int(os.environ.get("RELIABILITY_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    for number in range(DEFAULT_PRODUCTION_TRIALS):
        kill, nth, conditions = _production_draw(rng, number)
        with trial_bench(tmp_path / f"trial{number}") as bench:
            code, problems = _trial(bench, kill, nth=nth, conditions=conditions)
        with capsys.disabled():
            print(f"\nproduction trial {number}: seed={seed} {kill}:{nth} ({conditions}) exit {code}")
        expected = 0 if kill == SIGTERM_MID_RSYNC else -signal.SIGKILL
        assert code == expected, f"seed={seed} trial {number}: {kill} not reached (exit {code})"
        assert problems == [], f"seed={seed} trial {number} ({kill}:{nth}, {conditions}): {problems}"


@dataclass(frozen=True)
class Draw:
    kill: str
    nth: int = 1
    after_s: float | None = None
    mode: str = "overlapped"
    conditions: Conditions = Conditions()

    def __str__(self) -> str:
        where = f"{self.kill}:{self.nth}" if self.after_s is None else f"timer {self.after_s:.2f}s"
        return f"{where} {self.mode} ({self.conditions})"


def _draw(rng: random.Random, run_seconds: float) -> Draw:
    roll, mode = rng.random(), rng.choices(list(MODES), weights=(5, 2))[0]
    # a third of the trials wait for a restore in progress, a third have a hook failing once (independently)
    conditions = Conditions(restore_checks=rng.randint(1, 3) if rng.random() < 1 / 3 else 0,
                            hook_failures=1 if rng.random() < 1 / 3 else 0)
    if roll < 0.4:
        checkpoint = rng.choice(IN_PROCESS_CHECKPOINTS)
        nth = rng.randint(1, 4) if checkpoint in (MID_DOWNLOAD, MID_EXTRACT) else 1
        return Draw(checkpoint, nth, mode=mode, conditions=conditions)
    if roll < 0.5:
        return Draw(MID_RSYNC, mode=mode, conditions=conditions)
    if roll < 0.6:
        return Draw(SIGTERM_MID_RSYNC, mode=mode, conditions=conditions)
    # the timer's range is an undisturbed drain's; a wait for the restore adds a second per check
    return Draw("timer", after_s=rng.uniform(0.0, run_seconds + conditions.restore_checks), mode=mode,
                conditions=conditions)


@pytest.mark.long
def test_randomized_crash_trials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = int(os.environ.get("RELIABILITY_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    with capsys.disabled():
        print(f"\nrandomized crash trials: seed={seed} trials={RANDOM_TRIALS} (replay: RELIABILITY_SEED={seed})")
    with trial_bench(tmp_path / "calibration") as bench:  # an undisturbed drain sets the range of the timer kills
        work = bench.stage(spec("W1NLM4700"))
        started = time.monotonic()
        assert bench.run(["run", "--drain"]) == 0
        run_seconds = time.monotonic() - started
        assert bench.problems([work]) == []
    outcomes: dict[str, int] = {}
    for number in range(RANDOM_TRIALS):
        draw = _draw(rng, run_seconds)
        with trial_bench(tmp_path / f"trial{number}") as bench:
            code, problems = _trial(bench, draw.kill, nth=draw.nth, after_s=draw.after_s,
                                    mode=MODES[draw.mode], conditions=draw.conditions)
        kind = draw.kill if draw.after_s is None else "timer"
        stopped = code == (0 if kind == SIGTERM_MID_RSYNC else -signal.SIGKILL)
        outcome = f"{kind} stopped" if stopped else f"{kind} exit {code} (not reached)"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert problems == [], f"seed={seed} trial {number} ({draw}): {problems}"
    with capsys.disabled():
        print(f"randomized crash trials: seed={seed}: {RANDOM_TRIALS} trials passed (timer range "
              f"{run_seconds:.1f} s); {dict(sorted(outcomes.items()))}")
