"""Fetch benchmark: our ranged, journaled GETs vs s3transfer's download_file, same object, same moto server.

    .venv/bin/python -m bench.fetch_bench --size-mib 64

Loopback moto (a Python server) is the bottleneck here, so this measures our overhead (per-part fsync +
journal, checksum pass) against s3transfer's under the same conditions, not S3 throughput. Alternates
A B A B, medians of the repeats; JSON goes to bench/results/fetch_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from moto.server import ThreadedMotoServer

from onprem.finisher.fetch.download import FetchRequest, FetchSettings, fetch_object

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY = "Archive0/00/W1BENCH00/W1BENCH00.bag.zip"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "fetch_bench.json")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    scratch = Path(tempfile.mkdtemp(prefix="fetch-bench-"))
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        s3.create_bucket(Bucket="bench-bucket")
        put = s3.put_object(Bucket="bench-bucket", Key=KEY, Body=os.urandom(args.size_mib * 2**20),
                            ChecksumAlgorithm="SHA256")
        request = FetchRequest("W1BENCH00", "bench-bucket", KEY, args.size_mib * 2**20, put["ETag"], None)
        part = args.part_mib * 2**20
        ours = FetchSettings(part_size=part, max_concurrency=args.concurrency, min_free_bytes=0)
        theirs = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=args.concurrency)

        def run_ours(out: Path) -> None:
            fetch_object(s3, request, out, ours)

        def run_s3transfer(out: Path) -> None:
            out.mkdir()
            s3.download_file("bench-bucket", KEY, str(out / "W1BENCH00.bag.zip"), Config=theirs)

        methods = {"s3transfer": run_s3transfer, "ours": run_ours}
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, method in methods.items():
                out = scratch / name
                started = time.perf_counter()
                method(out)
                times[name].append(time.perf_counter() - started)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        server.stop()
    print(f"\n{args.size_mib} MiB object, {args.part_mib} MiB parts, concurrency {args.concurrency}, moto on "
          f"loopback, medians of {args.repeats} (A B alternating)\n")
    print(f"{'method':<11} {'median s':>9} {'MiB/s':>8}  runs")
    results = []
    for name, runs in times.items():
        median = statistics.median(runs)
        results.append({"method": name, "median_s": round(median, 3), "mib_per_s": round(args.size_mib / median, 1),
                        "runs_s": [round(r, 3) for r in runs]})
        print(f"{name:<11} {median:>9.2f} {args.size_mib / median:>8.1f}  {results[-1]['runs_s']}")
    print(f"\nreproduce: .venv/bin/python {' '.join(['-m', 'bench.fetch_bench', *sys.argv[1:]])}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size_mib": args.size_mib, "part_mib": args.part_mib,
                                     "concurrency": args.concurrency, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
