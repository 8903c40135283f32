"""A temporary memory-limited cgroup (v1 ``memory.limit_in_bytes`` or v2 ``memory.max``) for one benchmark run.

    with MemoryCgroup(512 * 2**20) as group:          # raises CgroupUnavailable with the reason
        MeasuredProcess(argv, cgroup_procs=group.procs_file)

The group is made a child of this process's own memory cgroup (so it stays inside whatever limits the machine
already puts on us) and is removed afterwards. Page cache is charged to the group too: a bag larger than the limit
cannot stay cached, so the run pays for the I/O it causes. Needs root (or a delegated cgroup).
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupUnavailable", "MemoryCgroup", "probe_memory_cgroup"]

_ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


class CgroupUnavailable(RuntimeError):
    """No memory cgroup could be made here; the message says why."""


@dataclass(frozen=True)
class _Layout:
    version: int
    parent: Path


def _layout() -> _Layout:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    for line in lines:  # v1: "4:memory:/path"
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and (_ROOT / "memory").is_dir():
            return _Layout(1, _ROOT / "memory" / path.lstrip("/"))
    for line in lines:  # v2: "0::/path"
        if line.startswith("0::") and (_ROOT / "cgroup.controllers").is_file():
            return _Layout(2, _ROOT / line[3:].lstrip("/"))
    raise CgroupUnavailable("no cgroup v1 memory controller and no cgroup v2 hierarchy at /sys/fs/cgroup")


class MemoryCgroup:
    """A child memory cgroup limited to ``limit_bytes``; ``procs_file`` is what a process writes its pid to."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.path: Path | None = None
        self.version = 0

    @property
    def procs_file(self) -> Path:
        if self.path is None:
            raise RuntimeError("cgroup not created")
        return self.path / "cgroup.procs"

    def __enter__(self) -> MemoryCgroup:
        layout = _layout()
        self.version = layout.version
        path = layout.parent / f"bdrc-bench-{os.getpid()}-{next(_counter)}"
        try:
            if layout.version == 2:
                _enable_memory_controller(layout.parent)
            path.mkdir()
            self.path = path
            limit_file = "memory.limit_in_bytes" if layout.version == 1 else "memory.max"
            (path / limit_file).write_text(str(self.limit_bytes))
            if layout.version == 2 and (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")  # a limit that swaps would not evict page cache alone
        except OSError as err:
            self.__exit__()
            raise CgroupUnavailable(f"cannot create a memory-limited cgroup under {layout.parent} "
                                    f"(cgroup v{layout.version}): {err}") from err
        return self

    def peak_bytes(self) -> int | None:
        """The group's peak memory use (page cache included), when the kernel reports it."""
        if self.path is None:
            return None
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int | None:
        if self.path is None:
            return None
        try:
            if self.version == 1:
                text = (self.path / "memory.oom_control").read_text()
            else:
                text = (self.path / "memory.events").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
        return None

    def __exit__(self, *_exc: object) -> None:
        if self.path is None:
            return
        deadline = time.monotonic() + 10
        while True:  # the last process may take a moment to leave
            try:
                self.path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        self.path = None


def _enable_memory_controller(parent: Path) -> None:
    control = parent / "cgroup.subtree_control"
    if "memory" not in control.read_text().split():
        control.write_text("+memory")


def probe_memory_cgroup(limit_bytes: int = 64 * 2**20) -> tuple[bool, str]:
    """``(True, "cgroup vN under …")`` when a limited group can be made and joined-for-writing, else the reason."""
    try:
        with MemoryCgroup(limit_bytes) as group:
            return True, f"cgroup v{group.version} under {group.path.parent if group.path else '?'}"
    except (CgroupUnavailable, OSError) as err:
        return False, str(err)
