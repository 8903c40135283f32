"""Stopping is clean, and the hook is its own phase: the finisher as a process, a real slowed sync (rsync, mv).

SIGTERM at each point of a real sync (rsync running, between the script's two renames, while the success line and
the marker are written) and SIGKILL of the finisher alone (the sync's process group surviving): no process left
behind (checked in /proc), the archive holds the work once, the success list names it once, the message is deleted
exactly once. A hook failing N times then succeeding: one sync, N + 1 hook runs, the history as docs/sync.md says.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.keys import archive_relpath_for_rid
from tests.reliability.faults import wait_for, write_rsync_shim
from tests.reliability.harness import Bench, spec, sync_count, trial_bench

RID = "W1NLM4700"
#: the shim's pause once it has done the rename asked for (longer than the trials' 2 s grace)
PAUSE_S = 4


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with trial_bench(tmp_path) as running:
        yield running


def _ours(bench: Bench) -> list[str]:
    """Every live process whose command line names this trial's folders (the script, rsync, mv, sleep)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(bench.paths.root) in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline[:160]}")
    return found


def _write_mv_shim(bin_dir: Path, last_arg_glob: str, flag: Path, pause_s: float) -> None:
    """An ``mv`` that, the first time its destination matches ``last_arg_glob``, renames, touches ``flag`` and
    pauses (the marker is moved twice: pending, then complete)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "mv"
    shim.write_text(
        "#!/bin/sh\n"
        "for last; do :; done\n"
        f'[ -e "{flag}" ] && exec /bin/mv "$@"\n'
        f'case "$last" in {last_arg_glob}) /bin/mv "$@"; status=$?; touch "{flag}"; sleep {pause_s}; '
        'exit $status;;\n'
        'esac\nexec /bin/mv "$@"\n', encoding="utf-8")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _syncing_copy_has_files(bench: Bench) -> bool:
    parent = bench.paths.archive_root / archive_relpath_for_rid(RID).parent
    return any(p.is_file() for d in parent.glob(f".{RID}.syncing.*") for p in d.rglob("*"))


def _slowed(bench: Bench, bwlimit_kib: int = 32) -> dict[str, str]:
    shim_dir = bench.scratch / "shims"
    write_rsync_shim(shim_dir, bench.scratch / "rsync-calls.txt", bwlimit_kib=bwlimit_kib)
    return {"PATH": f"{shim_dir}:{os.environ['PATH']}", "SYNC_FORCE_COPY": "1"}


def _sigterm_when(bench: Bench, env: dict[str, str], seen: object) -> subprocess.Popen[str]:
    process = bench.start(["run", "--drain"], env=env)
    wait_for(lambda: seen() or process.poll() is not None, 60, "the sync at the point to stop it")  # type: ignore[operator]
    assert process.poll() is None, f"the finisher ended ({process.returncode}) before the stop"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return process


def _events(bench: Bench) -> list[str]:
    return [entry["event"] for entry in bench.status()[RID]["history"]]


def _finished_once(bench: Bench, work: object) -> None:
    assert bench.drain_until_quiet() == 0
    assert _ours(bench) == []
    assert bench.problems([work]) == []  # type: ignore[list-item]
    assert sync_count(bench, RID) == 1


def test_sigterm_with_rsync_running_stops_the_group_releases_the_message_and_a_restart_syncs_once(
        bench: Bench) -> None:
    work = bench.stage(spec(RID))
    process = _sigterm_when(bench, _slowed(bench), lambda: _syncing_copy_has_files(bench))
    assert process.returncode == 0
    assert _ours(bench) == [], "the sync's process group outlived the finisher"
    assert not (bench.paths.archive_root / archive_relpath_for_rid(RID)).exists()
    assert list((bench.paths.archive_root / archive_relpath_for_rid(RID).parent).glob(f".{RID}.*")) == []
    row = bench.status()[RID]
    assert row["phase"] == "debagged" and _events(bench)[-1] == "released"
    assert row["history"][-1]["reason"] == "shutdown"
    _finished_once(bench, work)


def test_sigterm_between_the_two_renames_puts_the_previous_copy_back_and_a_restart_syncs_once(
        bench: Bench) -> None:
    target = bench.paths.archive_root / archive_relpath_for_rid(RID)
    (target / "old-image-group").mkdir(parents=True)
    (target / "old-image-group" / "old.tif").write_bytes(b"the previous archive copy")
    work = bench.stage(spec(RID))
    flag = bench.scratch / "moved-aside"
    # the mv shim holds the sync at the rename: the copy before it need not crawl (at 32 KiB/s it took ~9 s)
    env = {**_slowed(bench, bwlimit_kib=4096)}
    _write_mv_shim(bench.scratch / "shims", "*/.*.previous.*", flag, 60)
    process = _sigterm_when(bench, env, flag.exists)
    assert process.returncode == 0
    assert _ours(bench) == []
    assert (target / "old-image-group" / "old.tif").read_bytes() == b"the previous archive copy"
    assert _events(bench)[-1] == "released"
    _finished_once(bench, work)
    assert not (target / "old-image-group").exists()


def test_sigterm_while_the_success_line_and_marker_are_written_finishes_that_sync_once(bench: Bench) -> None:
    work = bench.stage(spec(RID))
    flag = bench.scratch / "marker-written"
    _write_mv_shim(bench.scratch / "shims", f"*/.sync-locks/{RID}.synced", flag, PAUSE_S)
    env = {"PATH": f"{bench.scratch / 'shims'}:{os.environ['PATH']}"}
    process = _sigterm_when(bench, env, flag.exists)
    assert process.returncode == 0
    assert _ours(bench) == []
    assert bench.status()[RID]["phase"] == "synced"  # the last step outlasted the grace and finished
    _finished_once(bench, work)


def test_sigkill_of_the_finisher_alone_lets_the_sync_finish_and_the_restart_records_it_synced_once(
        bench: Bench) -> None:
    work = bench.stage(spec(RID))
    # the surviving copy runs ~4 s past the kill (~288 KiB at 64 KiB/s), and the restart waits for it
    process = bench.start(["run", "--drain"], env=_slowed(bench, bwlimit_kib=64))
    wait_for(lambda: _syncing_copy_has_files(bench) or process.poll() is not None, 60, "rsync writing")
    process.kill()  # the finisher alone: its sync's process group lives on, its stdout pipe closed
    process.wait(timeout=30)
    assert _ours(bench), "the sync's group should have survived a kill -9 of the finisher alone"
    _finished_once(bench, work)
    synced = [e for e in bench.status()[RID]["history"] if e["event"] == "work_synced"]
    assert len(synced) == 1 and synced[0].get("already_synced") in (True, None)


def _write_marker_kill_shim(bin_dir: Path, success_list: Path, flags: Path, listed: dict[str, bool]) -> None:
    """An ``mv`` whose first move onto a work's marker SIGKILLs the script's whole process group: for a work of
    ``listed`` True once the success list names it, before the rename; for False before the list names it, after
    the rename (between a pending marker and the success line)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for rid, after_line in listed.items():
        named = f'grep -qx {rid} "{success_list}" 2>/dev/null'
        let_through = f"! {named}" if after_line else named
        rename_first = "" if after_line else '/bin/mv "$@"; '
        flag = flags / f"{rid}.killed"
        cases.append(f'*/.sync-locks/{rid}.synced)\n'
                     f'    if [ -e "{flag}" ] || {let_through}; then exec /bin/mv "$@"; fi\n'
                     f'    {rename_first}touch "{flag}"; kill -9 0;;\n')
    shim = bin_dir / "mv"
    shim.write_text("#!/bin/sh\nfor last; do :; done\ncase \"$last\" in\n" + "".join(cases)
                    + "esac\nexec /bin/mv \"$@\"\n", encoding="utf-8")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_sigkill_of_the_sync_group_around_its_success_line_records_it_synced_once_without_a_second_copy(
        bench: Bench) -> None:
    """The script's group SIGKILLed once its copy is in place: W1NLM4700 right after its success line (before the
    marker is complete: a sync again before the fix), W1NLM4701 between its pending marker and its success line.
    The retry finds the marker and a verified copy, completes the success list once, copies nothing."""
    listed = {RID: True, "W1NLM4701": False}
    works = [bench.stage(spec(rid)) for rid in listed]
    flags = bench.scratch / "killed"
    flags.mkdir()
    _write_marker_kill_shim(bench.scratch / "shims", bench.paths.state_dir / "logs" / "synced-works.txt", flags,
                            listed)
    assert bench.drain_until_quiet(env={"PATH": f"{bench.scratch / 'shims'}:{os.environ['PATH']}"}) == 0
    assert {rid: sync_count(bench, rid) for rid in listed} == {rid: 1 for rid in listed}, "a work synced twice"
    assert sorted(flag.name for flag in flags.iterdir()) == [f"{rid}.killed" for rid in listed]
    assert _ours(bench) == []
    assert bench.problems(works) == []
    status = bench.status()
    for rid in listed:
        synced = [e for e in status[rid]["history"] if e["event"] == "work_synced"]
        assert [e.get("already_synced") for e in synced] == [True], rid  # the retry copied nothing


@pytest.mark.parametrize("failures", [2])
def test_a_hook_failing_n_times_then_succeeding_syncs_once_and_runs_the_hook_n_plus_1_times(
        bench: Bench, failures: int) -> None:
    calls = bench.scratch / "hook-calls.txt"
    hook = ["sh", "-c", f'echo {{work_rid}} >> "{calls}"; test "$(wc -l < "{calls}")" -gt {failures}']
    work = bench.stage(spec(RID))
    assert bench.drain_until_quiet(env={"FINISHER_POST_SYNC_HOOK": json.dumps(hook)}) == 0
    assert calls.read_text().split() == [RID] * (failures + 1)
    assert sync_count(bench, RID) == 1
    assert bench.problems([work]) == []
    events = _events(bench)
    assert events.count("downloaded") == 1 and events.count("debagged") == 1
    assert events[events.index("synced"):] == ["synced", *["hook_failed"] * failures, "hook_ok"]
    row = bench.status()[RID]
    assert row["last_cause"] is None and row["phase"] == "synced"
