"""The archive on a filesystem of its own: an ext4 image loop-mounted for the bench's second layout.

The archive's hosts likely mount the archive apart from the staging volume; this layout measures that case (the
runs' archive roots on the mount, staging on the scratch disk). A loop-mounted ext4, not a tmpfs: its page cache
is written back to a block device, so ``/proc/<pid>/io`` ``write_bytes`` (bench/measure.py) counts the writes made
to it, which :func:`write_accounting_ratio` checks before the runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ArchiveFsUnavailable", "loop_ext4", "write_accounting_ratio"]

_PROBE_BYTES = 8 * 2**20


class ArchiveFsUnavailable(RuntimeError):
    """The image could not be made or mounted (not root, no loop device, no mkfs.ext4): the layout is skipped."""


@contextmanager
def loop_ext4(scratch: Path, size_bytes: int) -> Iterator[Path]:
    """A fresh ext4 of ``size_bytes`` (a sparse image under ``scratch``) mounted at ``scratch/archive-fs``;
    always unmounted and its image removed."""
    image, mount = scratch / "archive-fs.ext4", scratch / "archive-fs"
    mount.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as handle:
        handle.truncate(size_bytes)
    mounted = False
    try:
        for argv in (["mkfs.ext4", "-q", "-F", str(image)], ["mount", "-o", "loop", str(image), str(mount)]):
            try:
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
            except OSError as err:
                raise ArchiveFsUnavailable(f"{argv[0]}: {err}") from err
            if done.returncode != 0:
                raise ArchiveFsUnavailable(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
        mounted = True
        yield mount
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False, capture_output=True)
        image.unlink(missing_ok=True)
        shutil.rmtree(mount, ignore_errors=True)


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
