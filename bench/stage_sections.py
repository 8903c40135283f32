"""The per-stage sections: raw stage throughputs (the ceiling), the de-bag stage alone, the Lambda's latency."""

from __future__ import annotations

import importlib
import inspect
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from bench.context import MIB, BenchContext, median
from bench.raw import disk_write_throughput, get_throughput, hash_throughput
from harness.bags import make_streamed_bag_zip, zip_tree

__all__ = ["RANGED_SPAN", "debag_section", "lambda_section", "range_seconds", "raw_section"]

#: the slow reads (ranges against moto, anything through the capped proxy) cover at most this much of the bag
RANGED_SPAN = 256 * MIB


def raw_section(ctx: BenchContext) -> None:
    """GET (one stream, ranged), hashing with the bag's algorithms, sequential write + fsync; medians of repeats."""
    o = ctx.options
    staged = ctx.staged("main")[0]
    s3 = ctx.aws.local.client("s3", ctx.aws.region)
    section = ctx.report.section("Raw stages alone (the ceiling of any pipeline here)", ["stage", "how", "MB/s",
                                                                                         "runs MB/s"])

    def add(stage: str, how: str, samples: list[float]) -> float:
        section.rows.append([stage, how, median(samples) / 1e6, " ".join(f"{s / 1e6:.0f}" for s in samples)])
        return median(samples)

    size, key = staged.size, staged.key
    single = add("GET from the stand-in", f"one streamed GET of {size / MIB:.0f} MiB",
                 ctx.timed_repeats(lambda: get_throughput(s3, staged.bucket, key, size)))
    threads = ctx.transfer.concurrency
    span = min(size, RANGED_SPAN)
    over = f" over the first {span / MIB:.0f} MiB" if span < size else ""
    add("GET from the stand-in", f"{threads} threads x 64 MiB ranges{over}",
        ctx.timed_repeats(lambda: get_throughput(s3, staged.bucket, key, size, part_bytes=64 * MIB,
                                                 concurrency=threads, span=span)))
    add("GET from the stand-in", f"{threads} threads x 8 MiB ranges (the baselines'){over}",
        [get_throughput(s3, staged.bucket, key, size, part_bytes=8 * MIB, concurrency=threads, span=span)])
    ranges = range_seconds(s3, staged.bucket, key, size, ctx.options.repeats)
    for length, seconds in ranges.items():
        section.rows.append(["ranged GET", f"one range of {length / MIB:g} MiB of the {size / MIB:.0f} MiB object",
                             length / seconds / 1e6, f"{seconds * 1000:.1f} ms"])
    algorithms = staged.bag.algorithms
    hashing = add("hash", f"{','.join(algorithms)} on {o.workers} threads",
                  ctx.timed_repeats(lambda: hash_throughput(algorithms, o.workers, min(size, 512 * MIB))))
    probes = Path(tempfile.mkdtemp(prefix="disk-probes-", dir=ctx.scratch))
    try:
        disk = add("disk write", f"sequential {min(size, 512 * MIB) // MIB} MiB + fsync, a new file each repeat",
                   ctx.timed_repeats(lambda: disk_write_throughput(probes, min(size, 512 * MIB))))
    finally:
        shutil.rmtree(probes, ignore_errors=True)
    stages = {"GET (one stream)": single, "hash": hashing, "disk write": disk}
    slowest = min(stages, key=stages.__getitem__)
    ctx.raw["raw"] = {name: value for name, value in stages.items()}
    ctx.raw["slowest_raw"] = {"stage": slowest, "bytes_per_s": stages[slowest]}
    lengths = sorted(ranges)
    ratio = (ranges[lengths[-1]] / ranges[lengths[0]]) / (lengths[-1] / lengths[0]) if len(lengths) > 1 else None
    ctx.raw["standin_ranges"] = {"seconds_by_range_bytes": {str(k): v for k, v in ranges.items()},
                                 "object_bytes": size, "time_ratio_over_size_ratio": ratio}
    section.notes.append(f"slowest raw stage: {slowest} ({stages[slowest] / 1e6:.0f} MB/s)")
    section.notes.append("the S3 stand-in (harness/s3_standin.py) is moto whose ranged GET reads only its range "
                         "(stock moto reads the whole object for each): a range's time grows with its size, "
                         f"{lengths[-1] // lengths[0]}x the bytes took "
                         f"{ranges[lengths[-1]] / ranges[lengths[0]]:.1f}x the time" if ratio else
                         "the S3 stand-in (harness/s3_standin.py): ranged GETs read only their range")


def range_seconds(s3: Any, bucket: str, key: str, size: int, repeats: int) -> dict[int, float]:
    """Median seconds of one ranged GET of 1, 4, 16 and 64 MiB (those the object holds) from its middle."""
    result: dict[int, float] = {}
    for length in (MIB, 4 * MIB, 16 * MIB, 64 * MIB):
        if length > size:
            break
        start = (size - length) // 2
        samples = []
        for _ in range(max(repeats, 3)):
            began = time.perf_counter()
            body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")["Body"]
            received = len(body.read())
            samples.append(time.perf_counter() - began)
            if received != length:
                raise RuntimeError(f"ranged GET of {key}: {received} bytes, expected {length}")
        result[length] = median(samples)
    return result


def debag_section(ctx: BenchContext) -> None:
    """bench/debag_bench.py's methods on a stored and a deflated bag, alternating, medians of repeats."""
    section = ctx.report.section("De-bag stage alone (zip on disk -> verified work folder)",
                                 ["zip", "method", "median s", "MB/s", "runs s"])
    try:
        debag_bench: Any = importlib.import_module("bench.debag_bench")
    except ImportError as err:
        section.notes.append(f"not run: bench/debag_bench.py could not be imported ({err})")
        return
    o = ctx.options
    scratch = Path(tempfile.mkdtemp(prefix="debag-", dir=ctx.scratch))
    try:
        debag_bench.build_bag(scratch / "build", o.debag_mib, o.file_mib, ["sha512"])
        rid = debag_bench.RID
        payload = sum(p.stat().st_size for p in (scratch / "build" / rid / "data").rglob("*") if p.is_file())
        zips = {name: (zip_tree(scratch / f"{rid}-{name}.bag.zip", [(f"{rid}.bag", scratch / "build" / rid)],
                                compression=mode), payload)
                for name, mode in (("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED))}
        shutil.rmtree(scratch / "build")
        small = make_streamed_bag_zip(scratch / "small", rid, total_bytes=o.small_files * o.small_kib * 1024,
                                      file_bytes=o.small_kib * 1024)
        zips[f"stored, {small.files} x {o.small_kib} KiB"] = (small.path, small.payload_bytes)
        methods = {
            "extract-then-validate": lambda z, out: debag_bench.run_baseline(z, out, o.workers),
            "ours": lambda z, out: debag_bench.run_ours(z, out, o.workers, True),
            "ours, no fsync": lambda z, out: debag_bench.run_ours(z, out, o.workers, False),
        }
        results: dict[str, dict[str, float]] = {}
        for compression, (zip_path, size) in zips.items():
            times: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(o.repeats):
                for name, method in methods.items():
                    times[name].append(debag_bench.timed(lambda out, m=method, z=zip_path: m(z, out), scratch))
            for name, runs in times.items():
                section.rows.append([compression, name, median(runs), size / median(runs) / 1e6,
                                     " ".join(f"{r:.2f}" for r in runs)])
            results[compression] = {name: median(runs) for name, runs in times.items()}
        ctx.raw["debag"] = {"payload_bytes": payload, "medians_s": results}
        for compression, medians in results.items():
            section.notes.append(f"{compression}: ours {medians['extract-then-validate'] / medians['ours']:.2f}x "
                                 "extract-then-validate")
        section.notes.append(f"{payload / MIB:.0f} MiB of {o.file_mib} MiB files (and the small-files bag), sha512, "
                             f"{o.workers} workers; baseline: zipfile.extractall + bagit validate(processes=N); "
                             "ours (fsync on) flushes the extracted files with one syncfs before placing them "
                             "(power-loss safe)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def lambda_section(ctx: BenchContext) -> None:
    """bench/lambda_bench.py's measurements, when that module exists."""
    section = ctx.report.section("Lambda (notify_restore)", ["measure", "value"])
    path = Path(__file__).with_name("lambda_bench.py")
    if not path.is_file():
        section.notes.append("not run: bench/lambda_bench.py does not exist")
        return
    try:
        module: Any = importlib.import_module("bench.lambda_bench")
        measure = getattr(module, "measure", None) or getattr(module, "run", None)
        if measure is None:
            raise AttributeError("no measure()/run() function")
        wanted = {"invocations": ctx.options.lambda_invocations, "cold_runs": ctx.options.lambda_cold_runs}
        accepted = inspect.signature(measure).parameters
        results = measure(**{name: value for name, value in wanted.items() if name in accepted})
    except Exception as err:  # noqa: BLE001 - another engineer's module: report, do not abort the run
        section.notes.append(f"not run: bench/lambda_bench.py failed ({type(err).__name__}: {err})")
        return
    values = results if isinstance(results, dict) else getattr(results, "__dict__", {"result": results})
    for name, value in values.items():
        section.rows.append([name, value])
    ctx.raw["lambda"] = values
