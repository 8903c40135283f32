"""Pipeline benchmark: fetch then de-bag (sequential) vs ``fetch_and_debag`` (overlapped), same bag, same server.

    .venv/bin/python -m bench.pipeline_bench --size-mib 256 --rate-mb-s 40

Generates a work of incompressible 5 MiB files bagged with bagit-python (sha512, zipped stored, as bdrc-bag
does), uploads it to a moto server running as a child process (not a thread of this one: it would share our
GIL), then times, alternating A B A B, each mode
  direct    against moto on loopback
  capped    through harness/proxy.py (also a child process) capping each connection at --rate-mb-s
and, when --part-mib is at least the zip (one part), the stream mode too (the zip never written).
with production settings (fsync of every part and extracted file, full-object sha256 verified). The sequential
runs also time their two stages apart, so "sum of stages" vs "slowest stage" can be read off. Medians of the
repeats; JSON goes to bench/results/pipeline_bench.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import boto3

from bench.debag_bench import RID, build_bag
from harness.bags import zip_tree
from harness.moto_server import MotoServer
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.fetch.download import FetchRequest, FetchSettings, fetch_object
from onprem.finisher.fetch_debag.overlapped import FetchDebagJob
from onprem.finisher.work.wiring import fetch_and_debag

REPO_ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-pipeline"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
_PROXY = """
import sys
from harness.proxy import ShapingProxy
proxy = ShapingProxy("127.0.0.1", int(sys.argv[1]), rate_bytes_per_s=float(sys.argv[2])).start()
print(proxy.port, flush=True)
sys.stdin.read()
"""


def start_proxy(upstream_port: int, rate_bytes_per_s: float) -> tuple[subprocess.Popen[str], str]:
    """The shaping proxy in a child process; its endpoint URL."""
    child = subprocess.Popen([sys.executable, "-c", _PROXY, str(upstream_port), str(rate_bytes_per_s)],
                             cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    return child, f"http://127.0.0.1:{int(child.stdout.readline())}"


def run_sequential(s3, request: FetchRequest, out: Path, fetch: FetchSettings,  # type: ignore[no-untyped-def]
                   debag: DebagSettings) -> dict[str, float]:
    started = time.perf_counter()
    fetched = fetch_object(s3, request, out / "downloads", fetch)
    downloaded = time.perf_counter()
    (out / "staging").mkdir()
    debag_archive(fetched.path, RID, out / "staging", debag, version_tag=fetched.etag)
    done = time.perf_counter()
    return {"total": done - started, "fetch": downloaded - started, "debag": done - downloaded}


def run_overlapped(s3, request: FetchRequest, out: Path, fetch: FetchSettings,  # type: ignore[no-untyped-def]
                   debag: DebagSettings) -> dict[str, float]:
    """The zip written to its .part file, members extracted from it as it arrives."""
    started = time.perf_counter()
    fetch_and_debag(s3, FetchDebagJob(request, out / "downloads", out / "staging", replace(fetch, stream=False), debag))
    return {"total": time.perf_counter() - started}


def run_stream(s3, request: FetchRequest, out: Path, fetch: FetchSettings,  # type: ignore[no-untyped-def]
               debag: DebagSettings) -> dict[str, float]:
    """One part: members cut out of the GET stream, the zip never written (the mode is skipped with parts)."""
    started = time.perf_counter()
    fetch_and_debag(s3, FetchDebagJob(request, out / "downloads", out / "staging", replace(fetch, stream=True), debag))
    return {"total": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--file-mib", type=int, default=5)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rate-mb-s", type=float, default=40.0, help="per-connection cap of the capped runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "pipeline_bench.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    scratch = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    moto = MotoServer(in_process=False)
    endpoint = moto.start()
    proxy, capped_url = start_proxy(int(endpoint.rsplit(":", 1)[1]), args.rate_mb_s * 1e6)
    try:
        build_bag(scratch / "build", args.size_mib, args.file_mib, ["sha512"])
        zip_path = zip_tree(scratch / f"{RID}.bag.zip", [(f"{RID}.bag", scratch / "build" / RID)],
                            compression=zipfile.ZIP_STORED)
        shutil.rmtree(scratch / "build")
        direct = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        direct.create_bucket(Bucket=BUCKET)
        with open(zip_path, "rb") as body:
            put = direct.put_object(Bucket=BUCKET, Key=KEY, Body=body, ChecksumAlgorithm="SHA256")
        request = FetchRequest(RID, BUCKET, KEY, zip_path.stat().st_size, put["ETag"], None)
        zip_path.unlink()
        clients = {"direct": direct, "capped": boto3.client("s3", endpoint_url=capped_url, region_name="us-east-1")}
        fetch = FetchSettings(part_size=args.part_mib * 2**20, max_concurrency=args.concurrency, min_free_bytes=0)
        debag = DebagSettings(workers=args.workers)
        modes = {"sequential": run_sequential, "overlapped": run_overlapped}
        if fetch.part_size >= request.size:
            modes["stream"] = run_stream
        runs: dict[tuple[str, str], list[dict[str, float]]] = {(n, m): [] for n in clients for m in modes}
        for _ in range(args.repeats):
            for network, s3 in clients.items():
                for mode, run in modes.items():  # A B A B …: drift hits both modes alike
                    out = scratch / "out"
                    out.mkdir()
                    runs[(network, mode)].append(run(s3, request, out, fetch, debag))
                    shutil.rmtree(out)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        moto.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    size_mib = request.size / 2**20
    print(f"\n{size_mib:.0f} MiB bag ({args.file_mib} MiB files, sha512, stored), {args.part_mib} MiB parts x "
          f"{args.concurrency}, {args.workers} de-bag workers, cpus={os.cpu_count()}, moto in a child process; "
          f"capped = {args.rate_mb_s:.0f} MB/s per connection; medians of {args.repeats} (A B alternating)\n")
    print(f"{'network':<8} {'mode':<11} {'median s':>9} {'MiB/s':>7} {'fetch s':>8} {'de-bag s':>9}  runs")
    results = []
    for (network, mode), samples in runs.items():
        row = {"network": network, "mode": mode, "runs_s": [round(s["total"], 2) for s in samples]}
        for part in ("total", "fetch", "debag"):
            if part in samples[0]:
                row[f"median_{part}_s"] = round(statistics.median(s[part] for s in samples), 2)
        row["mib_per_s"] = round(size_mib / row["median_total_s"], 1)
        results.append(row)
        print(f"{network:<8} {mode:<11} {row['median_total_s']:>9.2f} {row['mib_per_s']:>7.1f} "
              f"{row.get('median_fetch_s', float('nan')):>8.2f} {row.get('median_debag_s', float('nan')):>9.2f}"
              f"  {row['runs_s']}")
    print(f"\nreproduce: .venv/bin/python {' '.join(['-m', 'bench.pipeline_bench', *sys.argv[1:]])}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size_mib": round(size_mib, 1), "file_mib": args.file_mib,
                                     "part_mib": args.part_mib, "concurrency": args.concurrency,
                                     "workers": args.workers, "rate_mb_s": args.rate_mb_s, "cpus": os.cpu_count(),
                                     "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
