"""The ``hosts`` section: 1, 2 and 3 finisher hosts, each in its own network namespace on its own capped link, on
the same backlog and one PostgreSQL ledger. Throughput against one host, duplicate syncs, ledger transactions per
work. The link is the bound each host has in production (a WAN to S3), not its CPU.

    .venv/bin/python -m bench.hosts                      # the section alone: prints the table, writes nothing
    .venv/bin/python -m bench.hosts --rate-mb-s 20 --works 24 --work-mib 12

Each run: a fresh moto server and ledger database; the finishers started (production defaults but short polls,
``BENCH_SETTINGS``) and ready before the backlog is sent at once; timed from the send to every work synced and
its message deleted; then the finishers are killed (their work is done). Works are equal (incompressible images).
Each host's timeline (its works' lease to sync, from the ledger's history) shows whether a host idled while another
still had works: the table gives each host's first start and last sync, the raw facts every work's.
"""

from __future__ import annotations

import argparse
import ipaddress
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from config.loader import load_environment
from harness.bags import SampleSpec
from harness.fleet import Fleet
from harness.hosts import HostNetwork
from harness.moto_env import local_aws
from harness.postgres import PostgresCluster, running_cluster

__all__ = ["HostsOptions", "HostsRun", "hosts_section", "run_hosts"]

#: short polls so a finisher is ready at once and idles cheaply; everything else is the finisher's default
BENCH_SETTINGS = {"FINISHER_WAIT_TIME_SECONDS": "1", "FINISHER_MIN_FREE_BYTES": "0", "FINISHER_LOG_FORMAT": "text"}
GOALS = {2: 1.8, 3: 2.5}
MIB = 1 << 20


@dataclass(frozen=True)
class HostsOptions:
    #: under what this 2-core machine pushes end to end (~17 MB/s with 3 finishers and the stand-in): the links bound
    rate_mb_s: float = 5.0
    works: int = 24
    work_mib: float = 8.0
    host_counts: tuple[int, ...] = (1, 2, 3)


@dataclass(frozen=True)
class HostsRun:
    hosts: int
    seconds: float
    payload_bytes: int
    synced: int
    duplicate_syncs: int
    transactions_per_work: float
    shares: dict[str, int]
    #: host → each of its works' (started, synced) in seconds from the send (the ledger's history): who idled when
    timeline: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.synced > 0 and self.duplicate_syncs == 0


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.1)


def _transactions(cluster: PostgresCluster, database: str) -> int:
    engine = sa.create_engine(cluster.url())
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :name"),
                {"name": database}).scalar_one())
    finally:
        engine.dispose()


def run_hosts(network: HostNetwork, cluster: PostgresCluster, scratch: Path, hosts: int,
              options: HostsOptions) -> HostsRun:
    """One run on the first ``hosts`` hosts of ``network``."""
    local = cluster.new_database()
    database = local.rsplit("/", 1)[1]
    image_bytes = int(options.work_mib * MIB / 6)
    with local_aws(load_environment("dev"), config_dir=scratch / "aws") as aws:
        fleet = Fleet(aws, scratch, ledger_url=cluster.url(database, host=network.services_address),
                      local_ledger_url=local, network=network, settings=BENCH_SETTINGS)
        names = fleet.host_names[:hosts]
        messages = [fleet.stage(SampleSpec("NLM", (f"W1NLM{8000 + n}",), image_groups=2, images_per_group=3,
                                           image_bytes=image_bytes), send=False) for n in range(options.works)]
        payload = sum(work.payload_bytes for sample, _ in messages for work in sample.works)
        for name in names:
            fleet.start(name, ["run"])
        _wait(lambda: all("finisher started" in fleet.log(name) for name in names), 120, "the finishers started")
        before = _transactions(cluster, database)
        started, sent_at = time.monotonic(), datetime.now(UTC)
        for _, message in messages:
            fleet.send(message)
        _wait(lambda: sum(fleet.sync_lines().values()) >= options.works and fleet.queued() == 0, 900,
              f"{options.works} works synced")
        seconds = time.monotonic() - started
        for host in network.hosts[:hosts]:
            network.kill_all(host)
        time.sleep(1.0)  # the server flushes the ended sessions' counts
        transactions = _transactions(cluster, database) - before
        lines = fleet.sync_lines()
        shares = {name: len(works) for name, works in fleet.synced_by().items() if name in names}
        timeline = _timeline(fleet, names, sent_at)
    return HostsRun(hosts, seconds, payload, len(lines), sum(lines.values()) - len(lines),
                    transactions / max(options.works, 1), shares, timeline)


def _timeline(fleet: Fleet, names: list[str], sent_at: datetime) -> dict[str, list[tuple[float, float]]]:
    """Host → its works' (lease taken: ``restore_completed``, ``synced``) in seconds from ``sent_at``."""
    host_of = {rid: name for name, rids in fleet.synced_by().items() if name in names for rid in rids}
    timeline: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for record in fleet.ledger_records():
        moments = {entry.get("event"): entry.get("at") for entry in record.history}
        if record.work_rid in host_of and moments.get("restore_completed") and moments.get("synced"):
            start, end = (round((datetime.fromisoformat(str(moments[e])) - sent_at).total_seconds(), 2)
                          for e in ("restore_completed", "synced"))
            timeline[host_of[record.work_rid]].append((start, end))
    return {name: sorted(works) for name, works in timeline.items()}


def measure(options: HostsOptions, scratch: Path) -> list[HostsRun]:
    """Every host count of ``options`` on one network (its links capped at ``rate_mb_s``) and one cluster."""
    runs = []
    with HostNetwork(max(options.host_counts), rate_bytes_per_s=options.rate_mb_s * 1e6) as network:
        subnet = ipaddress.IPv4Network(f"{network.services_address}/24", strict=False)
        with running_cluster(("127.0.0.1", network.services_address), (str(subnet),)) as cluster:
            for hosts in options.host_counts:
                runs.append(run_hosts(network, cluster, scratch / f"hosts-{hosts}", hosts, options))
    return runs


def rows(runs: list[HostsRun]) -> tuple[list[list[Any]], dict[str, Any], list[str]]:
    """The table's rows, the raw facts and the notes (ratios against one host, the goals)."""
    one = next((r for r in runs if r.hosts == 1), None)
    table, notes = [], []
    facts: dict[str, Any] = {"runs": [r.__dict__ for r in runs]}
    for run in runs:
        ratio = one.seconds / run.seconds if one else float("nan")
        table.append([run.hosts, run.seconds, run.payload_bytes / run.seconds / 1e6, ratio, run.duplicate_syncs,
                      run.transactions_per_work, " ".join(f"{n}:{c}" for n, c in sorted(run.shares.items())),
                      " ".join(f"{n}:{works[0][0]:.1f}-{works[-1][1]:.1f}" for n, works in
                               sorted(run.timeline.items()) if works),
                      "ok" if run.ok else "FAILED"])
        facts[f"ratio_{run.hosts}"] = ratio
        if run.hosts in GOALS:
            met = ratio >= GOALS[run.hosts] and run.ok
            notes.append(f"{run.hosts} hosts: {ratio:.2f}x one host (goal >= {GOALS[run.hosts]}x): "
                         f"{'met' if met else 'not met'}")
    facts["duplicate_syncs"] = sum(r.duplicate_syncs for r in runs)
    facts["all_ok"] = all(r.ok for r in runs)
    facts["peak_transactions_per_work"] = max((r.transactions_per_work for r in runs), default=0.0)
    return table, facts, notes


COLUMNS = ["hosts", "s", "MB/s", "x one host", "duplicate syncs", "ledger tx/work", "works per host",
           "first start-last sync per host (s)", "ok"]


def hosts_section(ctx: Any) -> None:
    """``make bench``'s section (a BenchContext: its report, raw facts and scratch folder)."""
    options = HostsOptions()
    runs = measure(options, Path(ctx.scratch) / "hosts")
    table, facts, notes = rows(runs)
    section = ctx.report.section(f"Hosts: 1-3 finisher hosts, each its own network namespace and link capped at "
                                 f"{options.rate_mb_s:.0f} MB/s, {options.works} works of "
                                 f"{options.work_mib:.0f} MiB, one PostgreSQL ledger", COLUMNS)
    section.rows.extend(table)
    section.notes.extend(notes)
    ctx.raw["hosts"] = facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.hosts", description=__doc__.splitlines()[0])
    parser.add_argument("--rate-mb-s", type=float, default=HostsOptions.rate_mb_s)
    parser.add_argument("--works", type=int, default=HostsOptions.works)
    parser.add_argument("--work-mib", type=float, default=HostsOptions.work_mib)
    args = parser.parse_args(argv)
    options = HostsOptions(args.rate_mb_s, args.works, args.work_mib)
    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as scratch:
        runs = measure(options, Path(scratch))
    table, facts, notes = rows(runs)
    print(" | ".join(COLUMNS))
    for row in table:
        print(" | ".join(f"{cell:.2f}" if isinstance(cell, float) else str(cell) for cell in row))
    for note in notes:
        print(note)
    print(f"duplicate syncs {facts['duplicate_syncs']}; peak ledger transactions per work "
          f"{facts['peak_transactions_per_work']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
