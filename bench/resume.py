"""The resume row: our finisher SIGKILLed once the stand-in has served half the zip, then started again; the bytes
the stand-in served in total over the zip's size say how much of the download the restart fetched again.

The finisher runs as in the other sections (production defaults, ``finisher run``), with one worker setting of
its own: a visibility timeout of a few seconds, so that the killed run's message comes back at once instead of
after the queue's 15 minutes (the heartbeat keeps a live run's message hidden as in production).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.context import BenchContext
from bench.e2e import RunPaths, check_archive
from bench.ours import OursPipeline
from harness.moto_server import standin_stats

__all__ = ["resume_section"]

#: the killed run's message (and lease) come back this soon
VISIBILITY_S = 3


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the finisher and whatever it started (a kill -9 of its container); it may have ended already."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _served(ctx: BenchContext) -> int:
    return standin_stats(ctx.aws.endpoint_url)["bytes_served"]


def resume_section(ctx: BenchContext, bags: str = "bdrc", deadline_s: float = 600) -> None:
    """Kill at half the download, restart, drain; ``raw.resume`` holds the served bytes per zip byte."""
    section = ctx.report.section("Resume after SIGKILL at half the download (ours)", [
        "bag", "killed at", "served before kill", "served in all", "fetched/zip", "bound", "ok", "s"])
    staged = ctx.staged(bags)[0]
    root = ctx.scratch / "runs" / "resume"
    shutil.rmtree(root, ignore_errors=True)
    paths = RunPaths(root)
    for folder in (paths.staging_dir, paths.archive_root, paths.state_dir):
        folder.mkdir(parents=True)
    pipeline = OursPipeline({"FINISHER_VISIBILITY_TIMEOUT": str(VISIBILITY_S)})
    argv, env = pipeline.command(ctx.aws, paths, ctx.transfer, ctx.aws.endpoint_url, serve=True)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                    env.get("PYTHONPATH", "")) if p)
    first = _start(argv, env, root / "first.log")
    deadline = time.monotonic() + deadline_s
    while pipeline.ready_marker not in (root / "first.log").read_text(errors="replace"):
        if first.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    base = _served(ctx)
    started = time.perf_counter()
    ctx.aws.send(staged)
    while _served(ctx) - base < staged.size // 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    before_kill = _served(ctx) - base
    _kill_group(first)
    drain_argv, _ = pipeline.command(ctx.aws, paths, ctx.transfer, ctx.aws.endpoint_url, serve=False)
    second = _start(drain_argv, env, root / "second.log")
    try:
        second.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(second)
    seconds = time.perf_counter() - started
    served = _served(ctx) - base
    problems = check_archive(paths, [staged])
    if ctx.aws.queue_depth() > 0:
        problems.append(f"{ctx.aws.queue_depth()} message(s) left on the queue")
        ctx.aws.purge()
    fetch = ctx.ours_settings.get("fetch", {})
    part = int(fetch.get("part_size") or fetch.get("segment_size") or 64 * 2**20)
    conns = int(fetch.get("max_concurrency") or fetch.get("concurrency") or 8)
    bound = 1 + conns * part / staged.size
    facts = {"zip_bytes": staged.size, "served_before_kill": before_kill, "served_bytes": served,
             "fetched_per_zip_byte": served / staged.size, "bound": bound, "seconds": seconds,
             "all_ok": not problems and second.returncode == 0, "problems": problems}
    ctx.raw["resume"] = facts
    section.rows.append([f"{bags} ({staged.size / 2**20:.0f} MiB zip)", f"{before_kill / staged.size:.0%}",
                         before_kill, served, served / staged.size, bound,
                         "1/1" if facts["all_ok"] else "0/1", seconds])
    section.notes.append(f"the stand-in's count of object bytes served, from the message to the archive: the kill "
                         f"once it passed half the zip, a second `finisher run --drain` after it; bound = 1 + "
                         f"connections x part size / zip ({conns} x {part // 2**20} MiB)")
    if problems:
        section.notes.append(f"failed: {problems}; see {root}/second.log")
