"""``make bench``: our finisher against the previous pipeline's approach, in one run, on generated bags.

    .venv/bin/python -m bench.run                      # defaults: 1 GiB bdrc bag, 256 MiB main bag, 1 GiB in a cgroup
    .venv/bin/python -m bench.run --full               # 4 GiB bdrc bag, 1 GiB main bag, 4 GiB memory check
    .venv/bin/python -m bench.run --sections e2e,debag --repeats 5

Sections: raw (stage ceilings, the stand-in's ranged GETs), e2e (end to end: bdrc, 5 MiB files, many small files;
baseline, rclone pipeline, ours; the bdrc bag again with the archive on a loop-mounted ext4, bench/loopfs.py),
cgroup (memory-limited), resume (SIGKILL at half the download), hosts (1-3 finisher hosts in network namespaces,
bench/hosts.py), proxy (a capped link), debag (stage alone), lambda. Ours runs on its production
defaults in every section. Prints the tables and the issue's goals (met / not met), writes the JSON (machine facts
and ours' settings included) under bench/results/, draws docs/bench-bdrc.png and, with --markdown, the README's
tables to a file.
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from pathlib import Path

from bench.aws import bench_aws
from bench.context import BenchContext, BenchOptions
from bench.goals import judge
from bench.hosts import hosts_section
from bench.loopfs import LoopFsUnavailable, create_cost, free_bytes, loop_ext4
from bench.picture import draw_bdrc
from bench.report import Report, filesystem_of, machine_facts, render_markdown, render_text, splice_readme, write_json
from bench.resume import resume_section
from bench.sections import cgroup_section, e2e_section, proxy_section
from bench.stage_sections import debag_section, lambda_section, raw_section

SECTIONS: dict[str, Callable[[BenchContext], None]] = {
    "raw": raw_section, "e2e": e2e_section, "cgroup": cgroup_section, "resume": resume_section,
    "hosts": hosts_section, "proxy": proxy_section, "debag": debag_section, "lambda": lambda_section,
}
FULL = {"bdrc_mib": 4096, "main_mib": 1024, "memory_mib": 4096, "small_files": 5000, "debag_mib": 1024}
TINY = {"bdrc_mib": 12, "main_mib": 4, "file_mib": 1, "memory_mib": 8, "small_files": 20, "small_kib": 16,
        "debag_mib": 2, "repeats": 1, "memory_limit_mib": 256, "proxy_mib": 4,
        "lambda_invocations": 10, "lambda_cold_runs": 1, "cold_starts": 0}
#: the least room the fresh filesystem is made with (else the bench runs on the scratch dir, saying why)
_MIN_BENCH_FS = 8 * 2**30
PICTURE = Path(__file__).resolve().parents[1] / "docs" / "bench-bdrc.png"


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
    parser.add_argument("--scratch-fs", choices=("fresh", "as-is"), default="fresh",
                        help="fresh (default): run on a new journaled ext4 made under the scratch dir "
                             "(bench/loopfs.py); as-is: on the scratch dir's own filesystem")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the JSON goes (default bench/results)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables as markdown here")
    parser.add_argument("--shared", action="store_true", help="say the machine is shared (recorded in the JSON)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="also put the tables between the bench markers of this README")
    parser.add_argument("--picture", type=Path, default=None,
                        help=f"where the bdrc bag's picture goes (default {PICTURE}; with --tiny the results dir)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    values = {"workers": os.cpu_count() or 2, **(FULL if args.full else {}), **(TINY if args.tiny else {})}
    values.update({k: v for k, v in vars(args).items() if k in {f.name for f in fields(BenchOptions)} and
                   v is not None and k != "sections"})
    return BenchOptions(**values, sections=tuple(chosen)), args


@contextmanager
def bench_filesystem(scratch: Path, mode: str) -> Iterator[tuple[Path, dict[str, object]]]:
    """The folder every section works in and what it is: a fresh journaled ext4 under ``scratch`` (mode
    ``fresh``; the scratch dir itself when that cannot be made, with the reason) or ``scratch`` itself (``as-is``).
    What a file created after a clean-up costs is measured on both (the facts become ``raw.scratch_fs``)."""
    facts: dict[str, object] = {"mode": mode, "scratch_fs": filesystem_of(scratch),
                                "scratch_create_us": round(create_cost(scratch), 1), "made": False}
    if mode == "as-is":
        yield scratch, facts
        return
    free, margin = free_bytes(scratch), 4 * 2**30
    with ExitStack() as stack:
        try:
            if free < margin + _MIN_BENCH_FS:
                # a sparse image larger than the free space would fail writes deep inside a run, not here
                raise LoopFsUnavailable(f"only {free / 2**30:.1f} GiB free on {scratch}")
            # sparse: it takes on the disk what the runs write; all but a margin of the free space, so no section
            # runs out of room before it would have on the disk itself
            fs = stack.enter_context(loop_ext4(scratch, free - margin, "bench-fs"))
        except LoopFsUnavailable as err:
            facts["reason"] = str(err)
            print(f"bench filesystem: not made ({err}); running on {scratch}", file=sys.stderr, flush=True)
            yield scratch, facts
            return
        facts.update(made=True, size_gib=round(fs.size_bytes / 2**30, 1), direct_io=fs.direct_io,
                     mkfs_s=round(fs.mkfs_s, 2), create_us=round(create_cost(fs.mount), 1))
        print(f"bench filesystem: fresh ext4 on {fs.device} ({facts['size_gib']} GiB sparse, mkfs {fs.mkfs_s:.1f} s); "
              f"a create after a clean-up costs {facts['create_us']} us there, {facts['scratch_create_us']} us on "
              f"{scratch}", file=sys.stderr, flush=True)
        yield fs.mount, facts


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
        with ExitStack() as stack:
            work, fs_facts = stack.enter_context(bench_filesystem(scratch, args.scratch_fs))
            if fs_facts["made"]:
                report.machine["scratch_fs"] = f"fresh journaled ext4 (loop, on {report.machine['scratch_fs']})"
            aws = stack.enter_context(bench_aws(work, "prod"))
            ctx = BenchContext(options, work, aws, report)
            ctx.raw["scratch_fs"] = fs_facts
            for name in options.sections:
                print(f"== {name} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
                SECTIONS[name](ctx)
                failed += [f"{key}: {run.archive_problems}" for key, runs in ctx.runs.items() for run in runs
                           if not run.ok and f"{key}: {run.archive_problems}" not in failed]
            report.goals = judge(ctx)
            report.raw = ctx.raw
            if "bdrc" in ctx.timelines:
                picture = args.picture or (PICTURE if not args.tiny else (args.results_dir or Path(".")) /
                                           "bench-bdrc.png")
                bag = ctx.staged("bdrc")[0].bag
                draw_bdrc(ctx.timelines["bdrc"], picture, f"bdrc bag ({bag.payload_bytes / 2**20:.0f} MiB, "
                          f"{bag.files} files): bytes received and verified in place ({report.started_utc})")
                report.machine["picture"] = str(picture)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report.machine["seconds"] = round(time.monotonic() - started, 1)
    print(render_text(report))
    path = write_json(report, args.results_dir) if args.results_dir else write_json(report)
    print(f"JSON: {path}  ({report.machine['seconds']:.0f} s in all)")
    if args.markdown:
        args.markdown.write_text(render_markdown(report))
    if args.readme:
        splice_readme(args.readme, render_markdown(report))
    if failed:
        print("runs that failed (see the tables):\n  " + "\n  ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
