"""The bench's filesystems: fresh journaled ext4 images, loop-mounted.

Two uses. **The bench's own filesystem** (``bench.run --scratch-fs fresh``, the default): every section runs on
a new ext4 made with mkfs's defaults (a journal among them), as the archive's hosts' filesystems are. This VM's
root ext4 has no journal, and without one ext4's inode allocator passes over every recently freed inode
(``recently_deleted()`` in fs/ext4/ialloc.c), so on that disk what a file's creation costs depends on how much was
deleted just before: 26-130 us a file after a clean-up on an idle machine, 190-900 us while other work deleted
files, ~28 us on the fresh journaled ext4 either way (measured 2026-12-03/04). :func:`create_cost` measures both
for every run and the JSON keeps them (``raw.scratch_fs``). **The archive on a filesystem of its own** (the e2e
section's second layout): the runs' archive roots on a second image, staging on the bench's filesystem.

A loop device with direct I/O (``losetup --direct-io=on``): the image's pages are not cached a second time by
the disk under it (the memory-capped section's page cache stays its own). The page cache of the mounted ext4 is
written back to a block device, so ``/proc/<pid>/io`` ``write_bytes`` (bench/measure.py) counts the writes made
to it, which :func:`write_accounting_ratio` checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoopFs", "LoopFsUnavailable", "create_cost", "free_bytes", "loop_ext4", "write_accounting_ratio"]

_PROBE_BYTES = 8 * 2**20


class LoopFsUnavailable(RuntimeError):
    """The image could not be made or mounted (not root, no loop device, no mkfs.ext4)."""


@dataclass(frozen=True)
class LoopFs:
    mount: Path
    device: str
    size_bytes: int
    #: the loop device reads and writes its image with direct I/O
    direct_io: bool
    mkfs_s: float


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as err:
        raise LoopFsUnavailable(f"{argv[0]}: {err}") from err
    if done.returncode != 0:
        raise LoopFsUnavailable(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


@contextmanager
def loop_ext4(parent: Path, size_bytes: int, name: str) -> Iterator[LoopFs]:
    """A fresh ext4 of ``size_bytes`` (a sparse image ``parent/name.ext4``) mounted at ``parent/name``; always
    unmounted, detached and its image removed."""
    image, mount = parent / f"{name}.ext4", parent / name
    mount.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as handle:
        handle.truncate(size_bytes)
    device, mounted = "", False
    try:
        device = _run(["losetup", "--find", "--show", "--direct-io=on", str(image)])
        direct_io = _run(["losetup", "--noheadings", "--output", "DIO", device]) == "1"
        started = time.monotonic()
        # mkfs's defaults (journal, lazily initialised inode tables); noinit_itable: no background zeroing of the
        # inode tables racing the runs (an uninitialised group is known as such: nothing reads what is not there)
        _run(["mkfs.ext4", "-q", "-F", device])
        mkfs_s = time.monotonic() - started
        _run(["mount", "-o", "noinit_itable", device, str(mount)])
        mounted = True
        yield LoopFs(mount, device, size_bytes, direct_io, mkfs_s)
    finally:
        if mounted:
            _unmount(mount)
        if device:
            subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)
        image.unlink(missing_ok=True)
        shutil.rmtree(mount, ignore_errors=True)


def _unmount(mount: Path, patience_s: float = 10.0) -> None:
    """Unmount once the processes the runs started have let go of it (a server stopping as the bench ends still
    holds its files for a moment); detached lazily if one still holds it after ``patience_s``."""
    deadline = time.monotonic() + patience_s
    while subprocess.run(["umount", str(mount)], check=False, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run(["umount", "--lazy", str(mount)], check=False, capture_output=True)
            return
        time.sleep(0.2)


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def _write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def write_accounting_ratio(folder: Path) -> float:
    """Bytes ``write_bytes`` counted per byte written (and flushed) to a file in ``folder``: 1.0 when the storage
    counters see that filesystem, 0.0 when they do not (a tmpfs)."""
    probe = folder / ".write-probe"
    before = _write_bytes()
    with probe.open("wb") as handle:
        handle.write(os.urandom(_PROBE_BYTES))
        handle.flush()
        os.fsync(handle.fileno())
    counted = _write_bytes() - before
    probe.unlink()
    return counted / _PROBE_BYTES


def create_cost(folder: Path, files: int = 2000, file_bytes: int = 64 * 1024) -> float:
    """Microseconds per file to create and write ``files`` files of ``file_bytes`` in ``folder`` right after as
    many were deleted there: what a pipeline that follows another's clean-up pays per member."""
    probe, data = folder / ".create-probe", os.urandom(file_bytes)

    def create() -> float:
        probe.mkdir()
        started = time.perf_counter()
        for number in range(files):
            with open(probe / f"{number:05d}", "wb") as handle:
                handle.write(data)
        return time.perf_counter() - started

    create()
    shutil.rmtree(probe)
    seconds = create()
    shutil.rmtree(probe)
    return seconds / files * 1e6
