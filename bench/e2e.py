"""One end-to-end run: messages on the queue → a pipeline (baseline or ours) in its own measured process tree →
every work synced into a fresh archive and every message deleted.

The clock starts when the messages are sent and stops when the work queue is empty (the last message deleted),
polled every 20 ms from here; the process's own exit (its last empty long poll) is reported apart. Meanwhile a
:class:`~bench.timeline.TimelineSampler` records, every 0.02 s at first and 0.2 s from about 4 s, the bytes the
stand-in served, the bytes on the staging filesystem and the payload bytes in place (the staging peak and the picture
come from it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.aws import BenchAws, StagedBag
from bench.baseline import STAGES_PREFIX
from bench.cgroup import MemoryCgroup
from bench.measure import MeasuredProcess, RunMeasurement
from bench.timeline import Sample, TimelineSampler
from contract.keys import archive_relpath_for_rid

__all__ = ["PipelineRun", "RunPaths", "Transfer", "check_archive", "run_pipeline"]


@dataclass(frozen=True)
class Transfer:
    """How a baseline reads the object: one streamed GET, or ``concurrency`` threads of ``part_bytes`` ranges
    (ours reads it as its production settings say, whatever this holds)."""

    single_stream: bool = False
    part_bytes: int = 8 * 2**20
    concurrency: int = 8

    def describe(self) -> str:
        if self.single_stream:
            return "one streamed GET"
        return f"{self.concurrency} threads x {self.part_bytes // 2**20} MiB ranges"


@dataclass(frozen=True)
class RunPaths:
    """Fresh folders of one run: all on the scratch filesystem (staging and archive on one volume), or the archive
    root on ``archive_base`` (another filesystem: bench/loopfs.py)."""

    root: Path
    archive_base: Path | None = None

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    @property
    def archive_root(self) -> Path:
        return self.archive_base / self.root.name / "archive" if self.archive_base else self.root / "archive"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def success_list(self) -> Path:
        return self.root / "synced-works.txt"

    @property
    def log_path(self) -> Path:
        return self.root / "process.log"


class Pipeline(Protocol):
    name: str
    #: a line the process logs once it is polling the queue
    ready_marker: str

    def command(self, aws: BenchAws, paths: RunPaths, transfer: Transfer, endpoint: str, *, serve: bool) -> tuple[
            list[str], dict[str, str]]:
        """argv and environment of one process on the work queue: until SIGTERM (``serve``), else until empty."""
        ...

    def synced_rids(self, paths: RunPaths) -> list[str]:
        """RIDs synced during the run, once per sync (duplicates included)."""
        ...

    def stage_seconds(self, paths: RunPaths) -> dict[str, float]:
        """Seconds spent in each step of the pipeline, summed over the run's works."""
        ...


@dataclass
class PipelineRun:
    pipeline: str
    seconds: float
    processes: list[RunMeasurement]
    archive_ok: bool
    archive_problems: list[str]
    synced_rids: list[str]
    payload_bytes: int
    zip_bytes: int
    cgroup_peak_bytes: int | None = None
    stages: dict[str, float] = field(default_factory=dict)
    #: most bytes on the staging filesystem at once (sampled; the work's files, the zip, its extraction)
    staging_peak_bytes: int = 0
    timeline: list[Sample] = field(default_factory=list)
    #: object bytes the S3 stand-in served during the run (None: not a stand-in)
    served_bytes: int | None = None
    #: wall-clock time (time.time) the clock started, for the baselines' step ends in the picture
    started_wall: float = 0.0
    #: per work, when each step ended (time.time; the baselines log them)
    step_ends: list[dict[str, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.archive_ok and all(p.returncode == 0 for p in self.processes)

    @property
    def write_bytes(self) -> int:
        return sum(p.io.write_bytes for p in self.processes)

    @property
    def read_bytes(self) -> int:
        return sum(p.io.read_bytes for p in self.processes)

    @property
    def max_process_rss(self) -> int:
        return max(p.max_process_rss_bytes for p in self.processes)

    @property
    def tree_peak_rss(self) -> int:
        return max(p.tree_peak_rss_bytes for p in self.processes)

    @property
    def duplicate_syncs(self) -> int:
        return len(self.synced_rids) - len(set(self.synced_rids))


def check_archive(paths: RunPaths, staged: Sequence[StagedBag]) -> list[str]:
    """What is wrong with the archive of ``staged`` (file count, bytes), one line per work; [] when right."""
    problems = []
    for item in staged:
        folder = paths.archive_root / archive_relpath_for_rid(item.bag.work_rid)
        tag_folder = folder / f"{item.bag.work_rid}.bag"  # ours keeps the bag's tag files there
        files = [p for p in folder.rglob("*") if p.is_file() and tag_folder not in p.parents] if folder.is_dir() else []
        size = sum(p.stat().st_size for p in files)
        if len(files) != item.bag.files or size != item.bag.payload_bytes:
            problems.append(f"{item.bag.work_rid}: archive has {len(files)} files / {size} bytes, expected "
                            f"{item.bag.files} / {item.bag.payload_bytes}")
    return problems


def _wait_ready(running: Sequence[MeasuredProcess], marker: str, deadline: float) -> None:
    """Until every process logged ``marker`` (it is polling the queue) or exited."""
    while time.perf_counter() < deadline:
        if all(p.poll() is not None or p.logged(marker) for p in running):
            return
        time.sleep(0.02)


def run_pipeline(aws: BenchAws, pipeline: Pipeline, staged: Sequence[StagedBag], run_dir: Path, *,
                 transfer: Transfer, processes: int = 1, endpoint: str | None = None,
                 memory_limit: int | None = None, warm: bool = True, timeout_s: float = 900,
                 archive_base: Path | None = None) -> PipelineRun:
    """Send one message per staged bag to ``processes`` copies of ``pipeline``; stop the clock at an empty queue.

    ``warm``: the processes are started first and the messages sent once each is polling (a long-running
    finisher's situation); they are then stopped with SIGTERM. Else they start with the messages already queued
    and drain (start-up inside the time). ``archive_base``: the archive root on that filesystem instead of the run's
    folder (removed once checked: the next run finds the mount empty).
    """
    shutil.rmtree(run_dir, ignore_errors=True)
    paths = RunPaths(run_dir, archive_base)
    shutil.rmtree(paths.archive_root.parent if archive_base else paths.archive_root, ignore_errors=True)
    for folder in (paths.staging_dir, paths.archive_root, paths.state_dir):
        folder.mkdir(parents=True)
    # no run pays for another's writes: what the previous run left dirty (the baselines never flush) and its
    # clean-up are written back before this run's clock starts
    os.sync()
    argv, env = pipeline.command(aws, paths, transfer, endpoint or aws.endpoint_url, serve=warm)
    group = MemoryCgroup(memory_limit).__enter__() if memory_limit else None
    try:
        deadline = time.perf_counter() + timeout_s

        def start() -> list[MeasuredProcess]:
            return [MeasuredProcess(argv, env=env, cgroup_procs=group.procs_file if group else None,
                                    log_path=paths.root / f"process-{n}.log") for n in range(processes)]

        running = start() if warm else []
        _wait_ready(running, pipeline.ready_marker, deadline)
        sampler = TimelineSampler(aws.endpoint_url, paths.staging_dir, paths.archive_root).__enter__()
        started, started_wall = time.perf_counter(), time.time()
        try:
            for item in staged:
                aws.send(item)
            running = running or start()
            while aws.queue_depth() > 0 and time.perf_counter() < deadline:
                if all(p.poll() is not None for p in running):
                    break
                time.sleep(0.02)
            seconds = time.perf_counter() - started
        finally:
            sampler.__exit__()
        if warm:
            for process in running:
                process.terminate()
        measurements = [p.wait(timeout_s=max(1.0, deadline - time.perf_counter())) for p in running]
        peak = group.peak_bytes() if group else None
    finally:
        if group:
            group.__exit__()
    problems = check_archive(paths, staged)
    if archive_base:
        shutil.rmtree(paths.archive_root.parent, ignore_errors=True)
    if aws.queue_depth() > 0:
        problems.append(f"{aws.queue_depth()} message(s) left on the queue")
        aws.purge()
    return PipelineRun(
        pipeline=pipeline.name, seconds=seconds, processes=measurements, archive_ok=not problems,
        archive_problems=problems, synced_rids=pipeline.synced_rids(paths),
        payload_bytes=sum(s.bag.payload_bytes for s in staged), zip_bytes=sum(s.size for s in staged),
        cgroup_peak_bytes=peak, stages=pipeline.stage_seconds(paths), staging_peak_bytes=sampler.staging_peak,
        timeline=sampler.samples, served_bytes=sampler.served_total, started_wall=started_wall,
        step_ends=getattr(pipeline, "step_ends", lambda _paths: [])(paths),
    )


class BaselinePipeline:
    """``python -m bench.baseline`` (download_file, or ``rclone copyto`` with ``downloader="rclone"`` →
    extractall → bagit validate → rsync)."""

    ready_marker = "baseline: polling"

    def __init__(self, python: str, workers: int, downloader: str = "boto3") -> None:
        self.python, self.workers, self.downloader = python, workers, downloader
        self.name = "baseline" if downloader == "boto3" else downloader

    def command(self, aws: BenchAws, paths: RunPaths, transfer: Transfer, endpoint: str, *, serve: bool) -> tuple[
            list[str], dict[str, str]]:
        argv = [self.python, "-m", "bench.baseline", "--queue-url", aws.queue_url, "--region", aws.region,
                "--staging-dir", str(paths.staging_dir), "--archive-root", str(paths.archive_root),
                "--success-list", str(paths.success_list), "--workers", str(self.workers),
                "--downloader", self.downloader]
        if serve:
            argv.append("--serve")
        if transfer.single_stream:
            argv.append("--single-stream")
        else:
            argv += ["--part-mib", str(transfer.part_bytes // 2**20), "--concurrency", str(transfer.concurrency)]
        return argv, aws.subprocess_env(AWS_ENDPOINT_URL=endpoint)

    def synced_rids(self, paths: RunPaths) -> list[str]:
        if not paths.success_list.is_file():
            return []
        return paths.success_list.read_text().split()

    def stage_seconds(self, paths: RunPaths) -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in self._stage_lines(paths):
            for step, seconds in line["seconds"].items():
                totals[step] = totals.get(step, 0.0) + seconds
        return totals

    def step_ends(self, paths: RunPaths) -> list[dict[str, float]]:
        """Per work, the wall-clock time (time.time) each step ended."""
        return [line.get("ends", {}) for line in self._stage_lines(paths)]

    @staticmethod
    def _stage_lines(paths: RunPaths) -> list[dict[str, Any]]:
        return [json.loads(line.removeprefix(STAGES_PREFIX)) for log in sorted(paths.root.glob("process-*.log"))
                for line in log.read_text(errors="replace").splitlines() if line.startswith(STAGES_PREFIX)]
