"""What every benchmark section shares: options, scratch folder, the loopback AWS, the two pipelines, the bags
(generated and uploaded on first use) and the report being filled."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.aws import BenchAws, StagedBag
from bench.e2e import BaselinePipeline, Pipeline, PipelineRun, Transfer, run_pipeline
from bench.ours import OursPipeline
from bench.report import Report
from harness.bags import make_streamed_bag_zip

__all__ = ["BagSpec", "BenchContext", "BenchOptions", "median"]

MIB = 2**20


@dataclass(frozen=True)
class BagSpec:
    work_rid: str
    total_bytes: int
    file_bytes: int


@dataclass(frozen=True)
class BenchOptions:
    main_mib: int = 256
    file_mib: int = 5
    memory_mib: int = 1024
    small_files: int = 2000
    small_kib: int = 64
    debag_mib: int = 128
    scale_works: int = 6
    scale_mib: int = 32
    repeats: int = 3
    memory_limit_mib: int = 512
    proxy_rate_mb_s: float = 40.0
    proxy_part_mib: int = 64
    proxy_concurrency: int = 4
    #: the capped-proxy section's bag: at most this, so that moto's whole-object read per ranged GET (16 of them for
    #: a 1 GiB bag in 64 MiB parts) does not decide the section; the link does
    proxy_mib: int = 256
    workers: int = 2
    lambda_invocations: int = 200
    lambda_cold_runs: int = 5
    #: the bags of the end-to-end section: main (large files), small (many small files)
    e2e_bags: str = "main,small"
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
    ours: Pipeline = field(init=False)
    raw: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, list[PipelineRun]] = field(default_factory=dict)
    _staged: dict[str, list[StagedBag]] = field(default_factory=dict)
    _run_number: int = 0

    def __post_init__(self) -> None:
        self.baseline = BaselinePipeline(sys.executable, self.options.workers)
        self.ours = OursPipeline(self.options.workers)

    def bag_specs(self, name: str) -> list[BagSpec]:
        o = self.options
        if name == "main":
            return [BagSpec("W1BENCH01", o.main_mib * MIB, o.file_mib * MIB)]
        if name == "small":
            return [BagSpec("W1BENCH02", o.small_files * o.small_kib * 1024, o.small_kib * 1024)]
        if name == "proxy":
            return [BagSpec("W1BENCH04", min(o.main_mib, o.proxy_mib) * MIB, o.file_mib * MIB)]
        if name == "memory":
            return [BagSpec("W1BENCH03", o.memory_mib * MIB, o.file_mib * MIB)]
        if name == "scale":
            return [BagSpec(f"W1BENCHS{n:02d}", o.scale_mib * MIB, o.file_mib * MIB) for n in range(o.scale_works)]
        raise KeyError(name)

    def staged(self, name: str) -> list[StagedBag]:
        """The bags of ``name`` in the staging bucket (generated, uploaded and deleted locally on first use)."""
        if name not in self._staged:
            staged = []
            for spec in self.bag_specs(name):
                bag = make_streamed_bag_zip(self.scratch / "bags", spec.work_rid, total_bytes=spec.total_bytes,
                                             file_bytes=spec.file_bytes)
                staged.append(self.aws.stage(bag))
                bag.path.unlink()  # the server holds it now; keep the scratch disk for the runs
            self._staged[name] = staged
        return self._staged[name]

    def run(self, pipeline: Pipeline, bags: str, *, transfer: Transfer, processes: int = 1,
            endpoint: str | None = None, memory_limit: int | None = None, record: str | None = None) -> PipelineRun:
        """One end-to-end run in a fresh folder; failures are kept (they show in the tables as such)."""
        self._run_number += 1
        result = run_pipeline(self.aws, pipeline, self.staged(bags), self.scratch / "runs" / f"run-{self._run_number}",
                              transfer=transfer, processes=processes, endpoint=endpoint,
                              memory_limit=memory_limit)
        if not result.ok:
            tails = "\n".join(p.output_tail for p in result.processes)
            print(f"!! {pipeline.name} on {bags} failed: {result.archive_problems}\n{tails}", file=sys.stderr)
        self.runs.setdefault(record or f"{bags}/{pipeline.name}", []).append(result)
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
