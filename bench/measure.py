"""Measuring one pipeline run: wall time, storage I/O and peak RSS of its process tree, in a memory cgroup or not.

A run is started through a tiny wrapper (``python -m bench.measure --result F -- argv…``) that, optionally, joins
a memory cgroup, runs ``argv``, and after it exited writes its own ``/proc/self/io`` and
``getrusage(RUSAGE_CHILDREN)``: Linux adds the counters of every reaped descendant (rsync, the sync script …) to
its parent, so these are the whole tree's, and nothing of the benchmark process (which hosts the moto server).

I/O counters: ``read_bytes``/``write_bytes`` are storage-level (pages read from / dirtied towards the block
device, page-cache hits excluded); ``rchar``/``wchar`` count every read()/write() including sockets and cache
hits. We use ``write_bytes`` (+ ``cancelled_write_bytes``, dirty pages dropped before writeback because their file
was deleted or truncated) and ``read_bytes`` (meaningful when the bag does not fit in page cache: the cgroup run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["MeasuredProcess", "ProcessIo", "RunMeasurement", "TreeRssSampler", "read_proc_io", "tree_rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcessIo:
    """``/proc/<pid>/io`` counters (bytes)."""

    rchar: int = 0
    wchar: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    cancelled_write_bytes: int = 0


def read_proc_io(pid: int | str = "self") -> ProcessIo:
    """The I/O counters of ``pid`` (its threads and reaped children included); zeros when unreadable."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            name, _, value = line.partition(":")
            values[name.strip()] = int(value)
    except (OSError, ValueError):
        return ProcessIo()
    return ProcessIo(**{k: values.get(k, 0) for k in ProcessIo.__dataclass_fields__})


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree_rss_bytes(root_pid: int) -> int:
    """Sum of the resident set sizes of ``root_pid`` and all its descendants now."""
    children = _children_map()
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[21]) * _PAGE  # field 24 of stat: rss in pages
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(children.get(pid, ()))
    return total


class TreeRssSampler:
    """Samples ``tree_rss_bytes(pid)`` every ``interval_s`` in a thread; ``peak`` is the largest sample."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid, self.interval_s, self.peak = pid, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, tree_rss_bytes(self.pid))

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class RunMeasurement:
    """One measured process tree run."""

    argv: list[str]
    returncode: int
    seconds: float
    io: ProcessIo
    #: largest RSS of any single process of the tree (getrusage RUSAGE_CHILDREN ru_maxrss)
    max_process_rss_bytes: int
    #: largest sum of RSS over the whole tree at once (sampled every 50 ms)
    tree_peak_rss_bytes: int
    output_tail: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class MeasuredProcess:
    """``argv`` started through the measuring wrapper (optionally inside ``cgroup_procs``' cgroup)."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 cgroup_procs: Path | None = None, log_path: Path | None = None) -> None:
        self.argv = list(argv)
        handle, name = tempfile.mkstemp(prefix="bench-measure-", suffix=".json")
        os.close(handle)
        self._result = Path(name)
        wrapper = [sys.executable, "-m", "bench.measure", "--result", str(self._result)]
        if cgroup_procs is not None:
            wrapper += ["--cgroup-procs", str(cgroup_procs)]
        self._log_path = log_path
        self._log = log_path.open("ab") if log_path else subprocess.DEVNULL
        repo = str(Path(__file__).resolve().parents[1])
        environ = dict(os.environ if env is None else env)
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, environ.get("PYTHONPATH", "")) if p)
        self.started = time.perf_counter()
        self.process = subprocess.Popen([*wrapper, "--", *self.argv], env=environ, cwd=cwd, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self._sampler = TreeRssSampler(self.process.pid).__enter__()

    def poll(self) -> int | None:
        return self.process.poll()

    def logged(self, marker: str) -> bool:
        """Whether the output so far holds ``marker``."""
        if self._log_path is None or not self._log_path.is_file():
            return False
        return marker in self._log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM to the command (the wrapper passes it on and still records the counters)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float | None = None) -> RunMeasurement:
        """Wait for the tree to finish (killed after ``timeout_s``) and collect what the wrapper recorded."""
        try:
            returncode = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the whole tree, not only the wrapper
            returncode = self.process.wait()
        seconds = time.perf_counter() - self.started
        self._sampler.__exit__()
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]
        try:
            recorded = json.loads(self._result.read_text() or "{}")
        except (OSError, ValueError):
            recorded = {}
        self._result.unlink(missing_ok=True)
        tail = ""
        if self._log_path is not None and self._log_path.is_file():
            tail = "\n".join(self._log_path.read_text(errors="replace").splitlines()[-15:])
        return RunMeasurement(
            argv=self.argv, returncode=recorded.get("returncode", returncode), seconds=seconds,
            io=ProcessIo(**recorded.get("io", {})), max_process_rss_bytes=int(recorded.get("maxrss_bytes", 0)),
            tree_peak_rss_bytes=self._sampler.peak, output_tail=tail,
        )


def _wrapper_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run a command; record the tree's I/O and peak RSS")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--cgroup-procs", type=Path, default=None, help="cgroup.procs file to join first")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.cgroup_procs is not None:
        args.cgroup_procs.write_text(f"{os.getpid()}\n")  # every descendant inherits the cgroup
    child = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    returncode = child.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    args.result.write_text(json.dumps({
        "returncode": returncode, "io": asdict(read_proc_io("self")), "maxrss_bytes": usage.ru_maxrss * 1024,
    }))
    return returncode


if __name__ == "__main__":
    sys.exit(_wrapper_main())
