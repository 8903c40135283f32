"""``make bench``: our finisher against the previous pipeline's approach, in one run, on generated bags.

    .venv/bin/python -m bench.run                      # defaults: a few minutes (256 MiB main bag, 1 GiB in a cgroup)
    .venv/bin/python -m bench.run --full               # the issue's sizes: 1 GiB main bag, 4 GiB memory check
    .venv/bin/python -m bench.run --sections e2e,debag --repeats 5

Sections: raw (stage ceilings), e2e (end to end, main + many small files), cgroup (memory-limited), scale (two
finishers on one queue), proxy (per-connection rate cap), debag (stage alone), lambda. Prints the tables, writes
the JSON (machine facts included) under bench/results/ and, with --markdown, the README's table to a file.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from bench.aws import bench_aws
from bench.context import MIB, BenchContext, BenchOptions
from bench.report import Goal, Report, machine_facts, render_markdown, render_text, write_json
from bench.sections import cgroup_section, e2e_section, proxy_section, scale_section
from bench.stage_sections import debag_section, lambda_section, raw_section

SECTIONS: dict[str, Callable[[BenchContext], None]] = {
    "raw": raw_section, "e2e": e2e_section, "cgroup": cgroup_section, "scale": scale_section,
    "proxy": proxy_section, "debag": debag_section, "lambda": lambda_section,
}
FULL = {"main_mib": 1024, "memory_mib": 4096, "small_files": 5000, "debag_mib": 1024, "scale_mib": 128}
TINY = {"main_mib": 4, "file_mib": 1, "memory_mib": 8, "small_files": 20, "small_kib": 16, "debag_mib": 2,
        "scale_works": 2, "scale_mib": 1, "repeats": 1, "memory_limit_mib": 256, "proxy_part_mib": 1, "proxy_mib": 4,
        "lambda_invocations": 10, "lambda_cold_runs": 1}


def parse_options(argv: list[str] | None = None) -> tuple[BenchOptions, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    defaults = BenchOptions()
    for item in fields(BenchOptions):
        if item.name == "sections":
            continue
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=type(getattr(defaults, item.name)), default=None,
                            help=f"default {getattr(defaults, item.name)}")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {','.join(SECTIONS)}")
    parser.add_argument("--full", action="store_true", help="the issue's sizes (1 GiB main bag, 4 GiB memory bag)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, one repeat (tests of the harness)")
    parser.add_argument("--scratch", type=Path, default=None, help="parent of the temp dir (a real disk, not tmpfs)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the JSON goes (default bench/results)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables as markdown here")
    parser.add_argument("--shared", action="store_true", help="say the machine is shared (recorded in the JSON)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    values = {"workers": os.cpu_count() or 2, **(FULL if args.full else {}), **(TINY if args.tiny else {})}
    values.update({k: v for k, v in vars(args).items() if k in {f.name for f in fields(BenchOptions)} and
                   v is not None and k != "sections"})
    return BenchOptions(**values, sections=tuple(chosen)), args


def judge(ctx: BenchContext) -> list[Goal]:
    """The issue's goals against what this run measured (None when a section was not run)."""
    raw = ctx.raw
    goals = []
    main, memory = raw.get("e2e_main", {}), raw.get("cgroup_memory", {})

    def goal(name: str, value: float | None, fmt: str, target: str, ok: Callable[[float], bool],
             source: dict[str, Any] | None = None) -> None:
        if source and not source.get("all_ok"):
            goals.append(Goal(name, "runs failed", target, False))
            return
        goals.append(Goal(name, "-" if value is None else fmt.format(value), target,
                          None if value is None else ok(value)))

    goal("e2e speedup vs baseline (main bag)", main.get("speedup"), "{:.2f}x", ">= 2x", lambda v: v >= 2, main)
    goal("e2e speedup vs baseline (memory cgroup)", memory.get("speedup"), "{:.2f}x", ">= 2x", lambda v: v >= 2,
         memory)
    goal("ours / slowest raw stage (main bag)", main.get("fraction_of_slowest_raw"), "{:.0%}", ">= 70%",
         lambda v: v >= 0.7, main)
    goal("bytes written per bag byte (main bag)", main.get("ours_written_per_byte"), "{:.2f}",
         "<= 2 (baseline 3)", lambda v: v <= 2.05, main)
    goal("bytes written per bag byte (memory cgroup)", memory.get("ours_written_per_byte"), "{:.2f}",
         "<= 2 (baseline 3)", lambda v: v <= 2.05, memory)
    for facts, label in ((main, "main"), (memory, "memory")):
        rss = facts.get("ours_max_rss")
        goal(f"finisher peak RSS ({label} bag)", None if rss is None else rss / MIB, "{:.0f} MiB", "<= 256 MiB",
             lambda v: v <= 256, facts)
    scale = raw.get("scale", {})
    goal("2 finishers vs 1: throughput ratio", scale.get("throughput_ratio"), "{:.2f}x", "> 1 (reported)",
         lambda v: v > 1, scale)
    goal("duplicate syncs with 2 finishers", scale.get("duplicate_syncs"), "{:.0f}", "0", lambda v: v == 0, scale)
    return goals


def main(argv: list[str] | None = None) -> int:
    options, args = parse_options(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="bdrc-bench-", dir=args.scratch))
    command = "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = Report(command=command.strip(), settings={k.name: getattr(options, k.name) for k in fields(options)},
                    machine=machine_facts(scratch, declared_shared=args.shared))
    failed: list[str] = []
    try:
        with bench_aws(scratch) as aws:
            ctx = BenchContext(options, scratch, aws, report)
            for name in options.sections:
                print(f"== {name} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
                SECTIONS[name](ctx)
                failed += [f"{key}: {run.archive_problems}" for key, runs in ctx.runs.items() for run in runs
                           if not run.ok and f"{key}: {run.archive_problems}" not in failed]
            report.goals = judge(ctx)
            report.raw = ctx.raw
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report.machine["seconds"] = round(time.monotonic() - started, 1)
    print(render_text(report))
    path = write_json(report, args.results_dir) if args.results_dir else write_json(report)
    print(f"JSON: {path}  ({report.machine['seconds']:.0f} s in all)")
    if args.markdown:
        args.markdown.write_text(render_markdown(report))
    if failed:
        print("runs that failed (see the tables):\n  " + "\n  ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
