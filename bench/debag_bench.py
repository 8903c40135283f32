"""De-bag benchmark: our single-pass de-bag vs extract-then-validate, on the same generated bag, same run.

    .venv/bin/python -m bench.debag_bench --size-mib 256

Generates a work of incompressible 5 MiB files (``harness.bags``), bags it with bagit-python (sha512, as bdrc-bag
does), zips it stored and deflated, then times, alternating A B C A B C …, per compression:
  baseline  zipfile.extractall + bagit.Bag(path).validate(processes=N)     (what bdrc-bag's debag does)
  ours      onprem.finisher.debag.archive.debag_archive (default settings: fsync on = one syncfs before placing)
  ours-nofs the same with fsync=False (the baseline does not fsync either)
and prints the median of the repeats per method; JSON goes to bench/results/debag_bench.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import bagit

from harness.bags import make_bagit_bag, write_work_tree, zip_tree
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
RID = "W1BENCH00"


def build_bag(root: Path, size_mib: int, file_mib: int, algorithms: list[str]) -> Path:
    """Bag ``root/{RID}`` in place: ``size_mib // file_mib`` incompressible files of ``file_mib`` MiB (at least one)."""
    work = write_work_tree(root, RID, files_per_work=max(1, size_mib // file_mib), file_size=file_mib * 2**20)
    make_bagit_bag(work, algorithms, processes=os.cpu_count() or 1)
    return work


def run_baseline(zip_path: Path, out: Path, workers: int) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(out)
    bagit.Bag(str(out / f"{RID}.bag")).validate(processes=workers)


def run_ours(zip_path: Path, out: Path, workers: int, fsync: bool) -> None:
    out.mkdir()
    debag_archive(zip_path, RID, out, DebagSettings(workers=workers, fsync=fsync))


def timed(action: Callable[[Path], None], scratch: Path) -> float:
    out = scratch / "out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    action(out)
    elapsed = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--file-mib", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--algorithms", default="sha512", help="comma-separated manifest algorithms")
    parser.add_argument("--scratch", type=Path, default=None, help="work folder (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "debag_bench.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bagit").setLevel(logging.WARNING)

    scratch = Path(tempfile.mkdtemp(prefix="debag-bench-", dir=args.scratch))
    try:
        build_bag(scratch / "build", args.size_mib, args.file_mib, args.algorithms.split(","))
        payload = sum(p.stat().st_size for p in (scratch / "build" / RID / "data").rglob("*") if p.is_file())
        zips = {name: zip_tree(scratch / f"{RID}-{name}.bag.zip", [(f"{RID}.bag", scratch / "build" / RID)],
                               compression=mode)
                for name, mode in (("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED))}
        shutil.rmtree(scratch / "build")
        methods: dict[str, Callable[[Path, Path], None]] = {
            "baseline": lambda z, o: run_baseline(z, o, args.workers),
            "ours": lambda z, o: run_ours(z, o, args.workers, True),
            "ours-nofsync": lambda z, o: run_ours(z, o, args.workers, False),
        }
        results = []
        for compression, zip_path in zips.items():
            times: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.repeats):  # A B C A B C …: drift hits every method alike
                for name, method in methods.items():
                    times[name].append(timed(lambda out, m=method, z=zip_path: m(z, out), scratch))
            for name, runs in times.items():
                median = statistics.median(runs)
                results.append({"compression": compression, "method": name, "median_s": round(median, 3),
                                "mib_per_s": round(payload / 2**20 / median, 1), "runs_s": [round(r, 3) for r in runs]})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\npayload {payload / 2**20:.0f} MiB in {args.file_mib} MiB files, {args.algorithms}, "
          f"workers={args.workers}, cpus={os.cpu_count()}, medians of {args.repeats} (A B C alternating)\n")
    print(f"{'compression':<11} {'method':<13} {'median s':>9} {'MiB/s':>8}  runs")
    for row in results:
        print(f"{row['compression']:<11} {row['method']:<13} {row['median_s']:>9.2f} {row['mib_per_s']:>8.1f}  "
              f"{row['runs_s']}")
    command = " ".join(["-m", "bench.debag_bench", *sys.argv[1:]])
    print(f"\nreproduce: .venv/bin/python {command}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size_mib": args.size_mib, "file_mib": args.file_mib, "workers": args.workers,
                                     "algorithms": args.algorithms, "cpus": os.cpu_count(), "results": results},
                                    indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
