"""The benchmark's output: tables on stdout, the same as markdown (the README's copy), and a JSON file with the
machine's facts under ``bench/results/`` (gitignored; the README's table is the published copy)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["Goal", "Report", "Section", "machine_facts", "render_markdown", "render_text", "write_json"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LIBRARIES = ("boto3", "botocore", "s3transfer", "bagit", "moto", "SQLAlchemy")


@dataclass
class Section:
    """One table: ``rows`` are lists of cells in ``columns`` order; ``notes`` are printed under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Goal:
    name: str
    measured: str
    target: str
    met: bool | None  # None: not measured in this run


@dataclass
class Report:
    command: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    sections: list[Section] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    started_utc: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    raw: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str, columns: list[str]) -> Section:
        self.sections.append(Section(title, columns))
        return self.sections[-1]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _goal_state(goal: Goal) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[goal.met]


def render_text(report: Report) -> str:
    """Fixed-width tables for a terminal."""
    out: list[str] = []
    for section in report.sections:
        cells = [section.columns, *[[_cell(c) for c in row] for row in section.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(section.columns))]
        numeric = [bool(section.rows) and all(isinstance(row[i], int | float) or row[i] is None
                                              for row in section.rows) for i in range(len(section.columns))]
        out += ["", section.title, "-" * len(section.title)]
        for n, row in enumerate(cells):
            out.append("  ".join(c.rjust(w) if right else c.ljust(w)
                                 for c, w, right in zip(row, widths, numeric, strict=True)).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        out += [f"  note: {note}" for note in section.notes]
    if report.goals:
        out += ["", "Goals", "-----"]
        width = max(len(g.name) for g in report.goals)
        out += [f"{g.name.ljust(width)}  {g.measured:>12}  (goal {g.target}): {_goal_state(g)}" for g in report.goals]
    out += ["", _machine_line(report.machine), f"command: {report.command}"]
    return "\n".join(out) + "\n"


def render_markdown(report: Report) -> str:
    """The same tables in GitHub markdown (what the README's Performance section shows)."""
    out = [f"Measured {report.started_utc} with `{report.command}`; {_machine_line(report.machine)}.", ""]
    for section in report.sections:
        out += [f"**{section.title}**", "", "| " + " | ".join(section.columns) + " |",
                "|" + "|".join("---" for _ in section.columns) + "|"]
        out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in section.rows]
        out += [""] + [f"- {note}" for note in section.notes] + ([""] if section.notes else [])
    if report.goals:
        out += ["**Goals**", "", "| goal | measured | target | |", "|---|---|---|---|"]
        out += [f"| {g.name} | {g.measured} | {g.target} | {_goal_state(g)} |" for g in report.goals]
        out.append("")
    return "\n".join(out)


def _machine_line(machine: dict[str, Any]) -> str:
    load = machine.get("loadavg_start", ["?"])[0]
    state = f"shared with other work (load at start {load})" if machine.get("loaded") else "otherwise idle"
    return (f"{machine.get('cpus')} cores, {machine.get('memory_gib')} GiB RAM, Python {machine.get('python')}, "
            f"{machine.get('scratch_fs')} scratch, machine {state}")


def write_json(report: Report, directory: Path = RESULTS_DIR) -> Path:
    """``directory/bench-<UTC time>.json`` (and ``latest.json``); returns the first path."""
    directory.mkdir(parents=True, exist_ok=True)
    document = asdict(report)
    stamp = report.started_utc.replace(":", "").replace("-", "")
    path = directory / f"bench-{stamp}.json"
    text = json.dumps(document, indent=2, default=str) + "\n"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _filesystem_of(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        return kind
    return kind


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None
    return None


def machine_facts(scratch: Path, *, declared_shared: bool = False) -> dict[str, Any]:
    """Cores, memory, Python, kernel, library versions, scratch filesystem and how loaded the machine is now."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = list(os.getloadavg())
    rsync = shutil.which("rsync")
    rsync_version = None
    if rsync:
        first = subprocess.run([rsync, "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
        rsync_version = first[0] if first else None
    head = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    return {
        "git_commit": head or None,
        "cpus": cpus,
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "kernel": platform.release(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "rsync": rsync_version,
        "scratch": str(scratch),
        "scratch_fs": _filesystem_of(scratch),
        "loadavg_start": [round(x, 2) for x in load],
        # another process was keeping a core busy when we started (or the caller says the machine is shared)
        "loaded": declared_shared or load[0] > 0.5 * (cpus or 1),
    }
