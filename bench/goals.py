"""The goals of issue 21, judged on what one ``make bench`` run measured: each met / not met with its figure (or
not measured, when its section was not run)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.context import MIB, BenchContext
from bench.report import Goal

__all__ = ["fetch_debag_lines", "judge"]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the fetch and de-bag code the issue counts (~2,700 lines before it)
FETCH_DEBAG = ("onprem/finisher/fetch", "onprem/finisher/debag", "onprem/finisher/fetch_debag")
LINES_BEFORE = 2700


def fetch_debag_lines(root: Path = REPO_ROOT) -> int:
    """Lines of the Python modules of the fetch and de-bag packages."""
    return sum(len(p.read_text(encoding="utf-8").splitlines()) for folder in FETCH_DEBAG
               for p in sorted((root / folder).rglob("*.py")))


def _e2e_facts(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every end-to-end section's facts (the e2e bags, the memory cgroup, the capped link)."""
    return {key: facts for key, facts in raw.items()
            if isinstance(facts, dict) and "ours_written_per_byte" in facts}


def judge(ctx: BenchContext) -> list[Goal]:
    """The issue's goals table against this run."""
    raw = ctx.raw
    goals: list[Goal] = []

    def goal(name: str, value: float | None, fmt: str, target: str, ok: Callable[[float], bool],
             sources: list[dict[str, Any]] | None = None) -> None:
        if value is not None and any(not s.get("all_ok", True) for s in sources or []):
            goals.append(Goal(name, "runs failed", target, False))
            return
        goals.append(Goal(name, "-" if value is None else fmt.format(value), target,
                          None if value is None else ok(value)))

    e2e = _e2e_facts(raw)
    worst_written = max(e2e, key=lambda k: e2e[k]["ours_written_per_byte"]) if e2e else None
    goal(f"bytes written per bag byte, every e2e section (worst: {worst_written})",
         e2e[worst_written]["ours_written_per_byte"] if worst_written else None, "{:.2f}", "<= 1.02",
         lambda v: v <= 1.02, list(e2e.values()))
    peaks = {k: f["ours_staging_peak_per_byte"] for k, f in e2e.items() if "ours_staging_peak_per_byte" in f}
    worst_peak = max(peaks, key=peaks.__getitem__) if peaks else None
    goal(f"staging peak / payload (worst: {worst_peak})", peaks.get(worst_peak) if worst_peak else None, "{:.2f}",
         "<= 1.05", lambda v: v <= 1.05, list(e2e.values()))
    bdrc, small = raw.get("e2e_bdrc", {}), raw.get("e2e_small", {})
    goal("bdrc profile vs baseline, fast link", bdrc.get("speedup"), "{:.2f}x", ">= 2x", lambda v: v >= 2, [bdrc])
    goal("bdrc profile vs the rclone pipeline, same connections", bdrc.get("speedup_vs_rclone"), "{:.2f}x",
         ">= 1.5x", lambda v: v >= 1.5, [bdrc])
    goal(f"{ctx.options.small_files:,} x {ctx.options.small_kib} KiB vs baseline", small.get("speedup"), "{:.2f}x",
         ">= 1.3x", lambda v: v >= 1.3, [small])
    memory = raw.get("cgroup_memory", {})
    goal(f"{ctx.options.memory_mib} MiB in a {ctx.options.memory_limit_mib} MiB memory cgroup vs baseline",
         memory.get("speedup"), "{:.2f}x", ">= 2.5x", lambda v: v >= 2.5, [memory])
    proxy = raw.get("proxy_main", {})
    link = f", {ctx.options.proxy_link_mb_s:.0f} MB/s in all" if ctx.options.proxy_link_mb_s else ""
    goal(f"capped link ({ctx.options.proxy_rate_mb_s:.0f} MB/s per connection{link}): ours / raw ranged GET",
         proxy.get("ours_of_raw"), "{:.2f}", ">= 0.9", lambda v: v >= 0.9, [proxy])
    goal("capped link vs baseline", proxy.get("speedup"), "{:.2f}x", ">= 1.6x", lambda v: v >= 1.6, [proxy])
    resume = raw.get("resume", {})
    bound = resume.get("bound")
    goal("resume after a kill at 50 %: bytes fetched / zip size", resume.get("fetched_per_zip_byte"), "{:.2f}",
         f"<= {bound:.2f}" if bound else "<= 1 + conc x part / zip", lambda v: bound is not None and v <= bound,
         [resume])
    rss = {k: f["ours_max_rss"] for k, f in e2e.items() if f.get("ours_max_rss")}
    goal("finisher peak RSS (largest of the e2e sections)", max(rss.values()) / MIB if rss else None, "{:.0f} MiB",
         "<= 256 MiB", lambda v: v <= 256, list(e2e.values()))
    goal("lines of the fetch + de-bag code", float(fetch_debag_lines()), "{:,.0f}", f"< {LINES_BEFORE:,} (reported)",
         lambda v: v < LINES_BEFORE)
    hosts = raw.get("hosts", {})
    goal("2 hosts vs 1 (links the bound): throughput ratio", hosts.get("ratio_2"), "{:.2f}x", ">= 1.8x",
         lambda v: v >= 1.8, [hosts])
    goal("3 hosts vs 1 (links the bound): throughput ratio", hosts.get("ratio_3"), "{:.2f}x", ">= 2.5x",
         lambda v: v >= 2.5, [hosts])
    goal("duplicate syncs on 1-3 hosts", hosts.get("duplicate_syncs"), "{:.0f}", "0", lambda v: v == 0, [hosts])
    return goals
