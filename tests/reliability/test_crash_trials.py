"""Crash trials: ``finisher run --drain`` as a separate process, SIGKILLed at each checkpoint, restarted, drained.

After every trial: each work in the archive once and equal to its manifests, nothing half-written or stale beside
it, no message left (none in the DLQ), no orphan temp file in staging, the ledger says ``synced`` and its history
shows one sync. The default run kills at every checkpoint once; ``pytest --run-long`` adds ≥ 50 randomized
trials (kill point, n-th hit and timing drawn from a printed seed: ``RELIABILITY_SEED=<seed>`` replays them).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract.keys import archive_relpath_for_rid
from onprem.finisher.work.faults import AFTER_RECEIVE, BEFORE_DELETE, MID_DOWNLOAD, MID_EXTRACT, MID_SYNC
from tests.reliability.faults import kill_at, kill_tree, wait_for, write_rsync_shim
from tests.reliability.harness import Bench, StagedWork, spec, sync_count, trial_bench

#: checkpoints inside the finisher (MID_SYNC: the sync stage entered, the script not started yet)
IN_PROCESS_CHECKPOINTS = (AFTER_RECEIVE, MID_DOWNLOAD, MID_EXTRACT, MID_SYNC, BEFORE_DELETE)
MID_RSYNC = "mid_rsync"
#: download whole, then de-bag (the default overlaps them)
SEQUENTIAL = {"FINISHER_FETCH_DEBAG_OVERLAP": "false"}
#: one part: the zip is de-bagged straight from its GET and never written (stream_debag.py)
STREAM = {"FINISHER_FETCH_PART_SIZE": str(2**40), "FINISHER_FETCH_CONCURRENCY": "1"}
MODES = {"overlapped": None, "sequential": SEQUENTIAL, "stream": STREAM}
RANDOM_TRIALS = int(os.environ.get("RELIABILITY_TRIALS", "50"))


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with trial_bench(tmp_path) as running:
        yield running


def _syncing_copy_has_files(bench: Bench, rid: str) -> bool:
    parent = bench.paths.archive_root / archive_relpath_for_rid(rid).parent
    return any(p.is_file() for d in parent.glob(f".{rid}.syncing.*") for p in d.rglob("*"))


def _kill_mid_rsync(bench: Bench, rid: str, mode: dict[str, str], deadline_s: float = 60.0) -> int:
    """Run the drain with a slow rsync (copy mode) and SIGKILL the finisher and its children mid-transfer."""
    shim_dir = bench.scratch / "slow-rsync"
    write_rsync_shim(shim_dir, bench.scratch / "rsync-calls.txt", bwlimit_kib=32)
    process = bench.start(["run", "--drain"],
                          env={**mode, "PATH": f"{shim_dir}:{os.environ['PATH']}", "SYNC_FORCE_COPY": "1"})
    try:
        wait_for(lambda: _syncing_copy_has_files(bench, rid) or process.poll() is not None, deadline_s,
                 f"{rid}: rsync writing into the archive")
        assert process.poll() is None, f"the finisher ended ({process.returncode}) before rsync could be cut"
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
           mode: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Stage one work, kill the finisher as asked, restart and drain (both with the settings ``mode``); returns
    the kill's exit code and the problems found."""
    mode = mode or {}
    work = bench.stage(spec("W1NLM4700"))
    if kill == MID_RSYNC:
        code = _kill_mid_rsync(bench, work.work_rid, mode)
    elif after_s is not None:
        process = bench.start(["run", "--drain"], env=mode)
        try:
            process.wait(timeout=after_s)
        except subprocess.TimeoutExpired:  # still running at the drawn moment: kill it there
            kill_tree(process.pid)
        code = process.wait(timeout=30)
    else:
        code = bench.run(["run", "--drain"], env={**mode, **kill_at(kill, nth)})
    problems = _no_half_written_work(bench, [work])
    final = bench.drain_until_quiet(env=mode)
    if final != 0:
        problems.append(f"the restarted drain exited {final}")
    problems += bench.problems([work])
    syncs = sync_count(bench, work.work_rid)
    # a kill at a random moment can fall after the script finished and before the ledger heard of it: the
    # redo syncs identical content again (same archive folder, same bytes); at a checkpoint it must not happen
    if syncs != 1 and not (after_s is not None and syncs == 2):
        problems.append(f"{work.work_rid}: syncOneWork.sh reported {syncs} syncs, expected exactly 1")
    return code, problems


@pytest.mark.parametrize("checkpoint", IN_PROCESS_CHECKPOINTS)
def test_killed_at_checkpoint_then_restarted_archives_the_work_once(bench: Bench, checkpoint: str) -> None:
    code, problems = _trial(bench, checkpoint)
    assert code == -signal.SIGKILL, f"the finisher was not killed at {checkpoint} (exit {code}): never reached?"
    assert problems == []


@pytest.mark.parametrize("checkpoint", [MID_DOWNLOAD, MID_EXTRACT])
def test_killed_with_download_and_debag_in_sequence_then_restarted_archives_the_work_once(
    bench: Bench, checkpoint: str,
) -> None:
    """The same kills with the overlapped fetch+de-bag switched off (download whole, then de-bag)."""
    code, problems = _trial(bench, checkpoint, mode=SEQUENTIAL)
    assert code == -signal.SIGKILL, f"the finisher was not killed at {checkpoint} (exit {code}): never reached?"
    assert problems == []


@pytest.mark.parametrize("checkpoint", [MID_DOWNLOAD, MID_EXTRACT, BEFORE_DELETE])
def test_killed_while_streaming_one_part_then_restarted_archives_the_work_once(bench: Bench,
                                                                                 checkpoint: str) -> None:
    """The same kills when the zip is de-bagged from its GET (one part): the retry streams it again."""
    code, problems = _trial(bench, checkpoint, mode=STREAM)
    assert code == -signal.SIGKILL, f"the finisher was not killed at {checkpoint} (exit {code}): never reached?"
    assert problems == []
    assert "de-bagged on the way, the zip not kept" in (bench.paths.root / "finisher.log").read_text()
    assert not list(bench.paths.staging_dir.rglob("*.bag.zip*")), "a zip or .part file outlived the work"


def test_killed_mid_rsync_then_restarted_archives_the_work_once(bench: Bench) -> None:
    code, problems = _trial(bench, MID_RSYNC)
    assert code == -signal.SIGKILL
    assert problems == []


@dataclass(frozen=True)
class Draw:
    kill: str
    nth: int = 1
    after_s: float | None = None
    mode: str = "overlapped"

    def __str__(self) -> str:
        where = f"{self.kill}:{self.nth}" if self.after_s is None else f"timer {self.after_s:.2f}s"
        return f"{where} {self.mode}"


def _draw(rng: random.Random, run_seconds: float) -> Draw:
    roll, mode = rng.random(), rng.choices(list(MODES), weights=(5, 3, 2))[0]
    if roll < 0.45:
        checkpoint = rng.choice(IN_PROCESS_CHECKPOINTS)
        nth = rng.randint(1, 4) if checkpoint in (MID_DOWNLOAD, MID_EXTRACT) else 1
        return Draw(checkpoint, nth, mode=mode)
    if roll < 0.55:
        return Draw(MID_RSYNC, mode=mode)
    return Draw("timer", after_s=rng.uniform(0.0, run_seconds), mode=mode)


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
                                    mode=MODES[draw.mode])
        kind = draw.kill if draw.after_s is None else "timer"
        outcome = f"{kind} killed" if code == -signal.SIGKILL else f"{kind} exit {code} (not reached)"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert problems == [], f"seed={seed} trial {number} ({draw}): {problems}"
    with capsys.disabled():
        print(f"randomized crash trials: seed={seed}: {RANDOM_TRIALS} trials passed (timer range "
              f"{run_seconds:.1f} s); {dict(sorted(outcomes.items()))}")
