"""Several finishers on one backlog: each on a host of a ``HostNetwork`` (or a plain process on loopback), one
shared ledger (a PostgreSQL URL), one archive directory, each its own staging and state folders.

    with local_aws(DEV, config_dir=root / "aws") as aws, HostNetwork(3, rate_bytes_per_s=4e6) as network:
        fleet = Fleet(aws, root, ledger_url=hosts_url, local_ledger_url=loopback_url, network=network)
        works = [fleet.stage(SampleSpec("NLM", (f"W1NLM{n}",))) for n in range(12)]   # restored, message sent
        processes = [fleet.start(name, ["run", "--drain"]) for name in fleet.host_names]
        ...
        fleet.sync_lines()        # RID → lines in every host's success list (1 each: synced once)
        fleet.synced_by()         # host → the works its finisher synced

Messages are the contract's ``RestoredWork.build`` from each object's HEAD (what notify_restore sends), so the
hosts' runs do not depend on the Lambda. Used by tests/hosts and bench/hosts.py.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract import RestoredWork, message_attributes
from harness.bags import SampleSpec, SampleZip, build_sample_zip
from harness.events import restore_expiry
from harness.hosts import Host, HostNetwork
from harness.moto_env import LocalAws
from harness.pipeline import finisher_command, stage_sample

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the success list syncOneWork.sh appends a line to for each work it synced
SUCCESS_LIST = "synced-works.txt"


class Fleet:
    """Finishers on ``network``'s hosts (or ``plain`` processes when ``network`` is None) sharing ``ledger_url``.

    ``ledger_url`` is the URL the finishers use (the services address on a network), ``local_ledger_url`` the one
    this process reads the same ledger by (loopback); ``settings`` are FINISHER_* values every finisher gets.
    """

    def __init__(self, aws: LocalAws, root: Path, *, ledger_url: str, local_ledger_url: str | None = None,
                 network: HostNetwork | None = None, plain: int = 0,
                 settings: Mapping[str, str] | None = None) -> None:
        self.aws, self.root, self.network = aws, root, network
        self.ledger_url, self.local_ledger_url = ledger_url, local_ledger_url or ledger_url
        self.settings = dict(settings or {})
        self.hosts: dict[str, Host | None] = (
            {host.name: host for host in network.hosts} if network else {f"p{n}": None for n in range(1, plain + 1)})
        self.endpoint_url = network.forward(aws.endpoint_url) if network else aws.endpoint_url
        self.archive_root.mkdir(parents=True, exist_ok=True)  # the archive is mounted before a finisher starts
        #: pid of each finisher started → its host's name (lease owners are ``hostname:pid``)
        self.pid_hosts: dict[int, str] = {}

    @property
    def host_names(self) -> list[str]:
        return list(self.hosts)

    @property
    def archive_root(self) -> Path:
        return self.root / "archive"

    def host_dir(self, name: str) -> Path:
        return self.root / "hosts" / name

    # --- the backlog ----------------------------------------------------------------------------------------
    def stage(self, spec: SampleSpec, *, send: bool = True) -> tuple[SampleZip, RestoredWork]:
        """Build, upload (DEEP_ARCHIVE), restore, and (unless told not to) send its message."""
        sample = build_sample_zip(self.root / "bags" / uuid.uuid4().hex[:8], spec)
        staged = stage_sample(self.aws, sample)
        s3 = self.aws.client("s3", staged.region)
        s3.restore_object(Bucket=staged.bucket, Key=staged.key, VersionId=staged.version_id,
                          RestoreRequest={"Days": 5, "GlacierJobParameters": {"Tier": "Bulk"}})
        head = s3.head_object(Bucket=staged.bucket, Key=staged.key, VersionId=staged.version_id)
        message = RestoredWork.build(
            collection=sample.collection, bucket=staged.bucket, key=staged.key, region=staged.region,
            size=int(head["ContentLength"]), etag=str(head["ETag"]), event_time=datetime.now(UTC),
            source_event_id=str(uuid.uuid4()), version_id=staged.version_id, storage_class=head.get("StorageClass"),
            restore_expiry=restore_expiry(head["Restore"]) if head.get("Restore") else None)
        if send:
            self.send(message)
        return sample, message

    def send(self, message: RestoredWork) -> None:
        self.aws.client("sqs", message.region).send_message(
            QueueUrl=self.aws.queue_url(message.region), MessageBody=message.to_body(),
            MessageAttributes=message_attributes(message))

    def queued(self) -> int:
        """Messages left in the work queues (visible, in flight, delayed)."""
        return sum(self.aws.queue_depth(self.aws.queue_url(r), r) for r in self.aws.regions)

    def dead(self) -> int:
        return sum(self.aws.queue_depth(self.aws.dlq_url(r), r) for r in self.aws.regions)

    # --- the finishers --------------------------------------------------------------------------------------
    def environ(self, name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A finisher's environment on host ``name``: the stand-in's endpoint as that host reaches it, the
        shared ledger and archive, the host's own staging and state folders."""
        folder = self.host_dir(name)
        settings = {"BDRC_ENV": self.aws.environment.name, "FINISHER_ARCHIVE_ROOT": str(self.archive_root),
                    "FINISHER_STAGING_DIR": str(folder / "staging"), "FINISHER_STATE_DIR": str(folder / "state"),
                    "FINISHER_LEDGER_URL": self.ledger_url, "FINISHER_LOG_FORMAT": "text",
                    "PYTHONUNBUFFERED": "1", "COLUMNS": "160", **self.settings, **dict(extra or {})}
        environ = self.aws.subprocess_env(**settings)
        # the services address is reachable from the hosts only (no route off the bridge): not real AWS
        environ["AWS_ENDPOINT_URL"] = self.endpoint_url
        return environ

    def start(self, name: str, args: Sequence[str], extra: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``finisher ARGS`` on host ``name``; its output goes to the host's ``finisher.log``."""
        folder = self.host_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        log = (folder / "finisher.log").open("a", encoding="utf-8")
        log.write(f"--- finisher {' '.join(args)} {dict(extra or {})}\n")
        log.flush()
        host, command = self.hosts[name], finisher_command(*args)
        environ = self.environ(name, extra)
        if host is not None and self.network is not None:
            process = self.network.popen(host, command, env=environ, cwd=REPO_ROOT, stdout=log)
        else:
            process = subprocess.Popen(command, env=environ, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       text=True)
        self.pid_hosts[process.pid] = name
        return process

    def log(self, name: str) -> str:
        path = self.host_dir(name) / "finisher.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    # --- what happened --------------------------------------------------------------------------------------
    def sync_lines(self, name: str | None = None) -> dict[str, int]:
        """Work RID → how many success-list lines name it, over every host or on host ``name`` (1: synced
        exactly once)."""
        counts: dict[str, int] = {}
        # only the state folders: the staging folders change under a walk while works are de-bagged
        states = [self.host_dir(name) / "state"] if name else [self.host_dir(n) / "state" for n in self.hosts]
        for path in (found for state in states if state.is_dir() for found in state.rglob(SUCCESS_LIST)):
            for rid in path.read_text(encoding="utf-8").split():
                counts[rid] = counts.get(rid, 0) + 1
        return counts

    def synced_by(self) -> dict[str, list[str]]:
        """Host name → the works its finisher synced (its own success list; the lease is gone once done)."""
        return {name: sorted(self.sync_lines(name)) for name in self.hosts}

    def ledger_records(self) -> list[Any]:
        """The shared ledger's works, read from this process."""
        from onprem.finisher.ledger.store import Ledger  # the product's own reader: never imported by it

        ledger = Ledger(self.local_ledger_url)
        try:
            return list(ledger.works())
        finally:
            ledger.close()

    def host_of(self, lease_owner: str | None) -> str | None:
        """The host of a lease owner (``hostname:pid[/slot]``), by the finisher's pid."""
        if not lease_owner or ":" not in lease_owner:
            return None
        pid = lease_owner.split(":", 1)[1].split("/", 1)[0]
        return self.pid_hosts.get(int(pid)) if pid.isdigit() else None

    def leased_by(self, name: str) -> list[Any]:
        """The ledger's works whose live lease host ``name``'s finisher holds, not yet synced."""
        now = datetime.now(UTC).replace(tzinfo=None)
        return [record for record in self.ledger_records()
                if self.host_of(record.lease_owner) == name and str(record.phase) != "synced"
                and record.lease_expires_at is not None and _naive(record.lease_expires_at) > now]


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
