"""What every benchmark section shares: options, scratch folder, the loopback AWS, the three pipelines (the
previous pipeline's steps, the same steps downloading with rclone, ours), the bags (generated and uploaded on first
use), the settings ours runs with and the report being filled."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.aws import BenchAws, StagedBag
from bench.e2e import BaselinePipeline, Pipeline, PipelineRun, Transfer, run_pipeline
from bench.ours import OursPipeline, connections, production_settings
from bench.report import Report
from harness.bags import make_bdrc_profile_zip, make_streamed_bag_zip

__all__ = ["BagSpec", "BenchContext", "BenchOptions", "median"]

MIB = 2**20


@dataclass(frozen=True)
class BagSpec:
    work_rid: str
    total_bytes: int
    file_bytes: int
    #: "uniform" (files of ``file_bytes``) or "bdrc" (harness.bags' real-shaped work)
    profile: str = "uniform"


@dataclass(frozen=True)
class BenchOptions:
    #: the bdrc profile's bag (the main end-to-end row)
    bdrc_mib: int = 1024
    main_mib: int = 256
    file_mib: int = 5
    memory_mib: int = 1024
    small_files: int = 2000
    small_kib: int = 64
    debag_mib: int = 128
    repeats: int = 3
    memory_limit_mib: int = 512
    proxy_rate_mb_s: float = 40.0
    #: the capped link's rate, every connection together: the issue's 4 x 40 MB/s (0: connections capped only)
    proxy_link_mb_s: float = 160.0
    #: the capped-proxy section's bag: at most this (the link's time is what it measures, not the bag's size)
    proxy_mib: int = 256
    workers: int = 2
    #: measure each pipeline's cold start on an empty queue (0: skip, as the harness's own test does)
    cold_starts: int = 1
    lambda_invocations: int = 200
    lambda_cold_runs: int = 5
    #: the bags of the end-to-end section: bdrc (a real work's shape), main (5 MiB files), small (many small files)
    e2e_bags: str = "bdrc,main,small"
    #: of those, the bags run again with the archive on another filesystem (a loop-mounted ext4; "" for none)
    archive_fs_bags: str = "bdrc"
    sections: tuple[str, ...] = ()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class BenchContext:
    options: BenchOptions
    scratch: Path
    aws: BenchAws
    report: Report
    baseline: Pipeline = field(init=False)
    rclone: Pipeline = field(init=False)
    ours: Pipeline = field(init=False)
    #: the settings ours runs with (recorded in the JSON) and the baselines' transfer: as many connections
    ours_settings: dict[str, Any] = field(init=False)
    transfer: Transfer = field(init=False)
    raw: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, list[PipelineRun]] = field(default_factory=dict)
    #: per bag, one run of each pipeline (the median repeat) whose timeline the picture draws
    timelines: dict[str, dict[str, PipelineRun]] = field(default_factory=dict)
    _staged: dict[str, list[StagedBag]] = field(default_factory=dict)
    _run_number: int = 0

    def __post_init__(self) -> None:
        self.baseline = BaselinePipeline(sys.executable, self.options.workers)
        self.rclone = BaselinePipeline(sys.executable, self.options.workers, downloader="rclone")
        self.ours = OursPipeline()
        self.ours_settings = production_settings(self.aws.env_file)
        self.transfer = Transfer(single_stream=False, part_bytes=8 * MIB, concurrency=connections(self.ours_settings))
        self.raw["ours_settings"] = {"environment_file": "config/prod.yaml (one region)", **self.ours_settings}
        self.raw["baseline_transfer"] = {"part_bytes": self.transfer.part_bytes,
                                         "concurrency": self.transfer.concurrency}

    def bag_specs(self, name: str) -> list[BagSpec]:
        o = self.options
        if name == "bdrc":
            return [BagSpec("W1BENCH05", o.bdrc_mib * MIB, 0, profile="bdrc")]
        if name == "main":
            return [BagSpec("W1BENCH01", o.main_mib * MIB, o.file_mib * MIB)]
        if name == "small":
            return [BagSpec("W1BENCH02", o.small_files * o.small_kib * 1024, o.small_kib * 1024)]
        if name == "proxy":
            return [BagSpec("W1BENCH04", min(o.main_mib, o.proxy_mib) * MIB, o.file_mib * MIB)]
        if name == "memory":
            return [BagSpec("W1BENCH03", o.memory_mib * MIB, o.file_mib * MIB)]
        raise KeyError(name)

    def staged(self, name: str) -> list[StagedBag]:
        """The bags of ``name`` in the staging bucket (generated, uploaded and deleted locally on first use)."""
        if name not in self._staged:
            staged = []
            for spec in self.bag_specs(name):
                if spec.profile == "bdrc":
                    bag = make_bdrc_profile_zip(self.scratch / "bags", spec.work_rid, total_bytes=spec.total_bytes)
                else:
                    bag = make_streamed_bag_zip(self.scratch / "bags", spec.work_rid, total_bytes=spec.total_bytes,
                                                 file_bytes=spec.file_bytes)
                staged.append(self.aws.stage(bag))
                bag.path.unlink()  # the server holds it now; keep the scratch disk for the runs
            self._staged[name] = staged
        return self._staged[name]

    def run(self, pipeline: Pipeline, bags: str, *, transfer: Transfer | None = None, processes: int = 1,
            endpoint: str | None = None, memory_limit: int | None = None, record: str | None = None,
            archive_base: Path | None = None) -> PipelineRun:
        """One end-to-end run in a fresh folder (the archive root on ``archive_base`` when given: another
        filesystem); failures are kept (they show in the tables as such)."""
        self._run_number += 1
        result = run_pipeline(self.aws, pipeline, self.staged(bags), self.scratch / "runs" / f"run-{self._run_number}",
                              transfer=transfer or self.transfer, processes=processes, endpoint=endpoint,
                              memory_limit=memory_limit, archive_base=archive_base)
        if not result.ok:
            tails = "\n".join(p.output_tail for p in result.processes)
            print(f"!! {pipeline.name} on {bags} failed: {result.archive_problems}\n{tails}", file=sys.stderr)
        layout = "/archive-fs" if archive_base else ""
        self.runs.setdefault(record or f"{bags}/{pipeline.name}{layout}", []).append(result)
        return result

    def empty_run_seconds(self, pipeline: Pipeline) -> float:
        """Wall time of ``pipeline``'s process on an empty queue: its start-up plus one empty 1 s long poll."""
        self._run_number += 1
        result = run_pipeline(self.aws, pipeline, [], self.scratch / "runs" / f"run-{self._run_number}",
                              transfer=Transfer(), warm=False)
        return result.processes[0].seconds

    def alternate(self, pipelines: Sequence[Pipeline], bags: str, runs: int, **kwargs: Any) -> dict[str, list[
            PipelineRun]]:
        """A B A B …: ``runs`` runs of each pipeline, interleaved so drift hits each alike."""
        results: dict[str, list[PipelineRun]] = {p.name: [] for p in pipelines}
        for _ in range(runs):
            for pipeline in pipelines:
                results[pipeline.name].append(self.run(pipeline, bags, **kwargs))
        return results

    def timed_repeats(self, action: Callable[[], float]) -> list[float]:
        return [action() for _ in range(self.options.repeats)]
