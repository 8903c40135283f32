"""Our finisher as the benchmark runs it: ``finisher run`` (``--drain`` for a cold run) in its own process, as a
production run starts it, on the production defaults: the environment file is ``config/prod.yaml``'s (one region)
and no fetch, de-bag or sync setting is set, so each is its owner's default (``production_settings`` records them).
Set are only the run's folders, the endpoint, and two settings of the worker loop that end a bench run sooner
(the length of the last long poll, the drain's idle limit); a section may add worker settings of its own (the
resume row's short visibility timeout)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.aws import BenchAws
from bench.e2e import RunPaths, Transfer
from harness.pipeline import finisher_command

__all__ = ["OursPipeline"]


#: what the bench sets beyond the folders and the endpoint: the worker loop's end of a run, nothing of a work's path
HARNESS_ENV = {"FINISHER_WAIT_TIME_SECONDS": "1", "FINISHER_DRAIN_IDLE_LIMIT": "20"}


def production_settings(env_file: Path) -> dict[str, Any]:
    """The settings ours runs with (the environment file + the owners' defaults + HARNESS_ENV), as recorded in the
    JSON: the worker, fetch, de-bag and sync sections."""
    from config.loader import load_environment
    from onprem.finisher.work.settings import load_settings

    names = {k.removeprefix("FINISHER_").lower(): v for k, v in HARNESS_ENV.items()}
    settings = load_settings(load_environment(path=env_file), **names)
    return {section: getattr(settings, section).model_dump(mode="json", exclude={"archive_root", "log_dir"})
            for section in ("worker", "fetch", "debag", "sync") if hasattr(settings, section)}


def connections(settings: dict[str, Any]) -> int:
    """How many GETs ours keeps in flight per work (the baselines get as many)."""
    fetch = settings.get("fetch", {})
    return int(fetch.get("max_concurrency") or fetch.get("concurrency") or 8)


class OursPipeline:
    """``finisher run [--drain]`` on the bench environment's queue, production defaults (``transfer`` is the
    baselines' and ignored here)."""

    name = "ours"
    ready_marker = "finisher started"

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = dict(extra_env or {})

    def command(self, aws: BenchAws, paths: RunPaths, transfer: Transfer, endpoint: str, *, serve: bool) -> tuple[
            list[str], dict[str, str]]:
        env = aws.subprocess_env(
            BDRC_ENV_FILE=str(aws.env_file),
            FINISHER_ARCHIVE_ROOT=str(paths.archive_root),
            FINISHER_STAGING_DIR=str(paths.staging_dir),
            FINISHER_STATE_DIR=str(paths.state_dir),
            # the clock stops when the queue is empty; a short last poll only ends the process sooner
            **HARNESS_ENV,
            # every client through ``endpoint`` (the proxy in the capped run; SQS traffic is tiny)
            AWS_ENDPOINT_URL=endpoint,
            **self.extra_env,
        )
        return finisher_command("run", *(() if serve else ("--drain",))), env

    def synced_rids(self, paths: RunPaths) -> list[str]:
        """Every sync the run made: one line per sync in the success lists syncOneWork.sh appends to."""
        rids: list[str] = []
        for listing in sorted(paths.root.rglob("synced-works.txt")):
            rids += listing.read_text().split()
        return rids or _ledger_synced(paths.state_dir)


    def stage_seconds(self, paths: RunPaths) -> dict[str, float]:
        """From the ledger's phase times: received → downloaded → de-bagged → synced."""
        totals: dict[str, float] = {}
        steps = (("fetch", "created_at", "downloaded_at"), ("de-bag", "downloaded_at", "debagged_at"),
                 ("sync", "debagged_at", "synced_at"))
        for database in paths.state_dir.glob("*.sqlite"):
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                try:
                    rows = db.execute("select created_at, downloaded_at, debagged_at, synced_at from works").fetchall()
                except sqlite3.Error:
                    continue
            for row in rows:
                times = dict(zip(("created_at", "downloaded_at", "debagged_at", "synced_at"), row, strict=True))
                for step, start, end in steps:
                    if times[start] and times[end]:
                        elapsed = (datetime.fromisoformat(times[end]) - datetime.fromisoformat(times[start]))
                        totals[step] = totals.get(step, 0.0) + elapsed.total_seconds()
        if totals.get("fetch") and totals.get("de-bag", 0.0) < 0.05 * totals["fetch"]:
            # overlapped (or streamed): the ledger marks downloaded and de-bagged together, at the end of both
            totals = {"fetch + de-bag": totals.pop("fetch") + totals.pop("de-bag", 0.0), **totals}
        return totals


def _ledger_synced(state_dir: Path) -> list[str]:
    """Fallback: works the ledger records as synced (one row per sync when the ledger keeps a row per attempt)."""
    rids: list[str] = []
    for database in state_dir.rglob("*.db"):
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
            for table in tables:
                columns = [r[1] for r in db.execute(f"pragma table_info({table})")]
                if "work_rid" in columns and "phase" in columns:
                    rows = db.execute(f"select work_rid from {table} where phase = 'synced'")
                    rids += [r[0] for r in rows]
    return rids
