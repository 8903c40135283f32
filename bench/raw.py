"""The raw stages a restore is made of, each alone: GET from the server, hashing, sequential disk write.

The slowest of them bounds any pipeline on this machine; the end-to-end result is reported as a fraction of it.
Throughputs are in bytes per second.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["disk_write_throughput", "get_throughput", "hash_throughput"]

_READ = 1 << 20


def _drain_body(body: Any) -> int:
    total = 0
    while chunk := body.read(_READ):
        total += len(chunk)
    return total


def get_throughput(s3: Any, bucket: str, key: str, size: int, *, part_bytes: int | None = None,
                   concurrency: int = 1, span: int | None = None) -> float:
    """Bytes/s of reading the object (discarded): one streamed GET, or ``part_bytes`` ranges on N threads.

    ``span``: read only the object's first ``span`` bytes (one ranged GET, or ranges covering them), so that the
    slow ways of reading a big object stay a few seconds long.
    """
    total = min(size, span or size)
    started = time.perf_counter()
    if part_bytes is None:
        extra = {"Range": f"bytes=0-{total - 1}"} if total < size else {}
        received = _drain_body(s3.get_object(Bucket=bucket, Key=key, **extra)["Body"])
    else:
        def part(start: int) -> int:
            end = min(start + part_bytes, total) - 1
            return _drain_body(s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"])

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            received = sum(pool.map(part, range(0, total, part_bytes)))
    elapsed = time.perf_counter() - started
    if received != total:
        raise RuntimeError(f"GET {key}: read {received} bytes, expected {total}")
    return total / elapsed


def hash_throughput(algorithms: Sequence[str], workers: int, total_bytes: int) -> float:
    """Bytes/s of payload hashed with every algorithm, on ``workers`` threads (hashlib releases the GIL)."""
    block = os.urandom(_READ)
    per_worker = max(1, total_bytes // workers // _READ)

    def work(_: int) -> None:
        hashes = [hashlib.new(a) for a in algorithms]
        for _ in range(per_worker):
            for h in hashes:
                h.update(block)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, range(workers)))
    return per_worker * workers * _READ / (time.perf_counter() - started)


def disk_write_throughput(directory: Path, total_bytes: int, block_bytes: int = 8 << 20) -> float:
    """Bytes/s of writing ``total_bytes`` sequentially to a new file in ``directory`` and fsyncing it.

    The file is left in place (the caller removes ``directory``): deleting it at once would hand its just-freed
    page-cache pages to the next repeat, which then measures a rewrite of warm memory, not what a pipeline
    writing new data meets (on a VM, first-touched guest memory is the slow part).
    """
    block = os.urandom(block_bytes)
    path = Path(tempfile.mkstemp(prefix=".disk-probe-", dir=directory)[1])
    started = time.perf_counter()
    with path.open("wb") as stream:
        for _ in range(max(1, total_bytes // block_bytes)):
            stream.write(block)
        stream.flush()
        os.fsync(stream.fileno())
    elapsed = time.perf_counter() - started
    return max(1, total_bytes // block_bytes) * block_bytes / elapsed
