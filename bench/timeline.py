"""What a run looks like over time: the object bytes the S3 stand-in has served, the bytes on the staging filesystem
and the payload bytes in place, sampled every 0.02 s at first and less often as the run goes on (0.2 s from about
4 s): a run of a fraction of a second (a tiny bag) is seen at its peak, a run of minutes is not slowed by the walks.

- *served*: the stand-in's ``bytes_served`` counter (harness/s3_standin.py), less its value at the start;
- *staging*: bytes of the files under the staging folder plus the archive root's hidden folders (where a work in
  progress may live before its rename), each inode once: the zip, its extraction, the work's files;
- *in place*: payload bytes of files at their place in a work folder (staging ``works/`` and the archive, each inode
  once; no zip, no ``.part``), what the picture shows as verified for ours, which hashes each byte as it writes it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.moto_server import standin_stats

__all__ = ["Sample", "TimelineSampler", "tree_bytes"]

#: files that are not a work's payload in place: the zip being downloaded, a part file, the ledger and journals
_NOT_PAYLOAD = (".zip", ".part", ".sqlite", ".journal", ".json", ".txt")


@dataclass(frozen=True)
class Sample:
    seconds: float
    served: int
    staging: int
    in_place: int


def tree_bytes(roots: list[Path], *, payload_only: bool = False, seen: set[int] | None = None) -> int:
    """Sum of file sizes under ``roots`` (each inode once across calls sharing ``seen``)."""
    seen = set() if seen is None else seen
    total, todo = 0, list(roots)
    while todo:
        folder = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(Path(entry.path))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                if payload_only and entry.name.endswith(_NOT_PAYLOAD):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed while we looked
            if stat.st_ino not in seen:
                seen.add(stat.st_ino)
                total += stat.st_size
    return total


class TimelineSampler:
    """Samples a run every ``interval_s`` in a thread; ``staging_peak`` and ``served_total`` once exited."""

    def __init__(self, endpoint_url: str, staging_dir: Path, archive_root: Path, interval_s: float = 0.2,
                 first_interval_s: float = 0.02) -> None:
        self.endpoint_url, self.staging_dir, self.archive_root = endpoint_url, staging_dir, archive_root
        self.interval_s, self.first_interval_s = interval_s, first_interval_s
        self.samples: list[Sample] = []
        self.staging_peak = 0
        self.served_total: int | None = None
        self._served_at_start = self._served()
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timeline-sampler", daemon=True)

    def _served(self) -> int | None:
        try:
            return standin_stats(self.endpoint_url)["bytes_served"]
        except (OSError, ValueError, KeyError):
            return None  # not the stand-in (an in-process moto): no served curve

    def sample(self) -> Sample:
        served = self._served()
        base = self._served_at_start
        staged = tree_bytes([self.staging_dir])
        # a work in progress under a hidden folder of the archive root (the archive's filesystem) is staging too
        staged += sum(tree_bytes([Path(e.path)]) for e in _hidden_folders(self.archive_root))
        in_place = tree_bytes([self.staging_dir, self.archive_root], payload_only=True)
        item = Sample(time.perf_counter() - self._started, 0 if served is None or base is None else served - base,
                      staged, in_place)
        self.staging_peak = max(self.staging_peak, staged)
        return item

    def next_interval(self, elapsed_s: float) -> float:
        """``first_interval_s`` at the start, growing by 1/20 of the time elapsed, up to ``interval_s``."""
        return min(self.interval_s, self.first_interval_s + elapsed_s / 20)

    def _run(self) -> None:
        while not self._stop.wait(self.next_interval(time.perf_counter() - self._started)):
            self.samples.append(self.sample())

    def __enter__(self) -> TimelineSampler:
        self.samples.append(self.sample())
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.sample())
        served, base = self._served(), self._served_at_start
        self.served_total = None if served is None or base is None else served - base


def _hidden_folders(root: Path) -> list[os.DirEntry[str]]:
    try:
        return [e for e in os.scandir(root) if e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
