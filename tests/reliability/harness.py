"""The finisher as a separate process against a loopback moto server, and the invariants checked after each trial.

    with local_aws(DEV, config_dir=...) as aws:
        bench = Bench(aws, FinisherPaths(tmp_path / "out"), tmp_path)
        work = bench.stage(SampleSpec("NLM", ("W1NLM4700",)))   # uploaded, restored, message on the queue
        killed = bench.run(["run", "--drain"], env=kill_at("mid_extract"))
        done = bench.drain_until_quiet()
        assert bench.problems([work]) == []

Messages are built with the contract's ``RestoredWork.build`` from the object's HEAD, exactly what
notify_restore sends, so these trials do not depend on the Lambda.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.loader import load_environment
from contract import RestoredWork, message_attributes
from contract.keys import archive_relpath_for_rid
from harness.bags import SampleSpec, SampleZip, build_sample_zip
from harness.events import restore_expiry
from harness.moto_env import LocalAws, local_aws
from harness.pipeline import FinisherPaths, finisher_command, stage_sample
from harness.verify import verify_work_in_archive
from harness.work_status import status_rows
from tests.reliability.inject_boot import BOOT, FAULTS_VAR, REPORT_VAR

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV = load_environment("dev")
#: the visibility timeout (and lease) in trials: a killed worker's message and lease come back this fast
TRIAL_VISIBILITY_S = 1
#: the finisher's settings in trials: short polls and backoffs, small download parts (several per zip)
TRIAL_FINISHER_ENV = {
    "FINISHER_VISIBILITY_TIMEOUT": str(TRIAL_VISIBILITY_S), "FINISHER_WAIT_TIME_SECONDS": "0",
    "FINISHER_LEASE_BUSY_DELAY": "1", "FINISHER_BACKOFF_BASE": "1", "FINISHER_BACKOFF_MAX": "2",
    "FINISHER_DRAIN_IDLE_LIMIT": "30", "FINISHER_GRACE_PERIOD": "2", "FINISHER_MIN_FREE_BYTES": "0",
    "FINISHER_FETCH_PART_SIZE": str(64 * 1024), "FINISHER_FETCH_CONCURRENCY": "2", "FINISHER_DEBAG_WORKERS": "2",
    "FINISHER_LOG_FORMAT": "text", "FINISHER_RESTORE_WAIT_INTERVAL": "1",
}
#: names a finished drain may leave in the staging root (evidence of failed de-bags is kept on purpose)
EVIDENCE_PREFIX = ".debag-failed-"


@dataclass(frozen=True)
class StagedWork:
    """A sample zip in its staging bucket, restored, with the message sent for it."""

    sample: SampleZip
    region: str
    bucket: str
    key: str
    version_id: str
    message: RestoredWork

    @property
    def work_rid(self) -> str:
        return self.sample.key_rid


@dataclass
class Bench:
    """One trial's world: the moto server's resources, the finisher's folders, scratch space."""

    aws: LocalAws
    paths: FinisherPaths
    scratch: Path
    #: the finisher's ledger (a PostgreSQL database of the session's cluster); None: SQLite in its state folder
    ledger_url: str | None = None

    def __post_init__(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.archive_root.mkdir(parents=True, exist_ok=True)  # the finisher never creates it
        for region in self.aws.regions:
            self.sqs(region).set_queue_attributes(
                QueueUrl=self.aws.queue_url(region), Attributes={"VisibilityTimeout": str(TRIAL_VISIBILITY_S)})

    def sqs(self, region: str | None = None) -> Any:
        return self.aws.client("sqs", region)

    # --- inputs ------------------------------------------------------------------------------------------------
    def stage(self, spec: SampleSpec, *, zip_path: Path | None = None, send: bool = True,
              restore: bool = True) -> StagedWork:
        """Upload (DEEP_ARCHIVE), restore (unless told not to), and put its RestoredWork message on the queue."""
        sample = build_sample_zip(self.scratch / "bags" / uuid.uuid4().hex[:8], spec)
        if zip_path is not None:
            sample = SampleZip(zip_path, sample.key_rid, sample.collection, ())
        staged = stage_sample(self.aws, sample)
        s3 = self.aws.client("s3", staged.region)
        if restore:
            s3.restore_object(Bucket=staged.bucket, Key=staged.key, VersionId=staged.version_id,
                              RestoreRequest={"Days": 5, "GlacierJobParameters": {"Tier": "Bulk"}})
        message = self.message_for(staged.bucket, staged.key, staged.version_id, sample.collection, staged.region)
        work = StagedWork(sample, staged.region, staged.bucket, staged.key, staged.version_id, message)
        if send:
            self.send(work.message)
        return work

    def stage_zip(self, zip_path: Path, rid: str, collection: str = "NLM", *, send: bool = True) -> StagedWork:
        """Stage any zip (a bad one) under ``rid``'s staging key, restored, with its message sent."""
        return self.stage(SampleSpec(collection, (rid,), image_groups=1, images_per_group=1, image_bytes=16),
                          zip_path=zip_path, send=send)

    def message_for(self, bucket: str, key: str, version_id: str | None, collection: str, region: str,
                    *, event_id: str | None = None) -> RestoredWork:
        head = self.aws.client("s3", region).head_object(Bucket=bucket, Key=key, **(
            {"VersionId": version_id} if version_id else {}))
        return RestoredWork.build(
            collection=collection, bucket=bucket, key=key, region=region, size=int(head["ContentLength"]),
            etag=str(head["ETag"]), event_time=datetime.now(UTC), source_event_id=event_id or str(uuid.uuid4()),
            version_id=version_id, storage_class=head.get("StorageClass"),
            restore_expiry=restore_expiry(head["Restore"]) if head.get("Restore") else None,
        )

    def send(self, message: RestoredWork | str, region: str | None = None) -> str:
        """Send a message (or a raw body) to the work queue; returns the SQS message id."""
        region = region or (message.region if isinstance(message, RestoredWork) else self.aws.default_region)
        kwargs: dict[str, Any] = {"QueueUrl": self.aws.queue_url(region)}
        if isinstance(message, RestoredWork):
            kwargs.update(MessageBody=message.to_body(), MessageAttributes=message_attributes(message))
        else:
            kwargs.update(MessageBody=message)
        return str(self.sqs(region).send_message(**kwargs)["MessageId"])

    # --- the finisher ------------------------------------------------------------------------------------------
    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        ledger = {"FINISHER_LEDGER_URL": self.ledger_url} if self.ledger_url else {}
        settings = {**self.paths.environ(self.aws.environment.name), **TRIAL_FINISHER_ENV, **ledger,
                    "PYTHONUNBUFFERED": "1", "COLUMNS": "160", **dict(extra or {})}
        return self.aws.subprocess_env(**settings)

    def start(self, args: Sequence[str], env: Mapping[str, str] | None = None,
              faults: Sequence[Mapping[str, Any]] = (), entry: str | None = None) -> subprocess.Popen[str]:
        """Start a finisher command; ``faults`` are installed inside it (see inject_boot.py); ``entry``: a module
        run instead of the console script (``python -m``: a test's ``cli.app.main(stages_for=…)``)."""
        log = (self.paths.root / "finisher.log").open("a", encoding="utf-8")
        log.write(f"--- finisher {' '.join(args)} {dict(env or {})} faults={list(faults)}\n")
        log.flush()
        environ = self.environ(env)
        command = [sys.executable, "-m", entry, *args] if entry else finisher_command(*args)
        if faults:
            environ.update({FAULTS_VAR: json.dumps(list(faults)), REPORT_VAR: str(self.fault_report)})
            command = [sys.executable, "-c", BOOT, *args]
        return subprocess.Popen(command, env=environ, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)

    @property
    def fault_report(self) -> Path:
        return self.paths.root / "faults-injected.txt"

    def run(self, args: Sequence[str], env: Mapping[str, str] | None = None,
            timeout_s: float = 120.0, faults: Sequence[Mapping[str, Any]] = (), entry: str | None = None) -> int:
        """Run a finisher command to its end; returns its exit code (-9 when it killed itself)."""
        process = self.start(args, env, faults, entry)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"finisher {' '.join(args)} still running after {timeout_s} s; log: "
                                 f"{self.paths.root / 'finisher.log'}") from None

    def in_flight(self) -> int:
        total = 0
        for region in self.aws.regions:
            attrs = self.sqs(region).get_queue_attributes(
                QueueUrl=self.aws.queue_url(region), AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
            total += int(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"])
        return total

    def drain_until_quiet(self, timeout_s: float = 120.0, env: Mapping[str, str] | None = None,
                          faults: Sequence[Mapping[str, Any]] = ()) -> int:
        """``finisher run --drain``: it waits for messages still in flight (a killed run's message comes back after
        the visibility timeout) and ends when every queue is empty; returns its exit code."""
        return self.run(["run", "--drain"], env, timeout_s=timeout_s, faults=faults)

    def queued(self) -> int:
        return sum(self.aws.queue_depth(self.aws.queue_url(r), r) for r in self.aws.regions)

    def dlq_messages(self) -> list[dict[str, Any]]:
        """Every message in the DLQs (received with all attributes, then made visible again)."""
        found = []
        for region in self.aws.regions:
            sqs, url = self.sqs(region), self.aws.dlq_url(region)
            seen: dict[str, dict[str, Any]] = {}
            for _ in range(10):
                batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                            MessageAttributeNames=["All"], AttributeNames=["All"],
                                            VisibilityTimeout=1).get("Messages", [])
                if not batch:
                    break
                for message in batch:
                    seen.setdefault(message["MessageId"], message)
            for message in seen.values():
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=0)
            found += seen.values()
        return found

    def status(self) -> dict[str, dict[str, Any]]:
        """The ledger's works by RID, as ``finisher status --json`` lists them (the latest row of each RID)."""
        rows = [row for row in self.ledger_rows() if row["source"] != "rejected"]
        return {row["work_rid"]: row for row in sorted(rows, key=lambda r: r["updated_at"] or "")}

    def cli_status(self) -> dict[str, dict[str, Any]]:
        """``finisher status --json`` by work RID (a separate process)."""
        result = subprocess.run(finisher_command("status", "--json"), env=self.environ(), capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return {str(row.get("work_rid")): row for row in status_rows(result.stdout)}

    def ledger_rows(self) -> list[dict[str, Any]]:
        """Every ledger row (rejected messages included), read with the finisher's own Ledger."""
        from onprem.finisher.ledger.store import Ledger

        ledger = Ledger(self.ledger_url or f"sqlite:///{self.paths.state_dir / 'ledger.sqlite'}")
        try:
            return [{**record.as_json(), "message_body": record.message_body} for record in ledger.works()]
        finally:
            ledger.close()

    # --- invariants --------------------------------------------------------------------------------------------
    def archive_problems(self, works: Sequence[StagedWork]) -> list[str]:
        """Each work in the archive once and equal to its manifests; nothing half-written beside it."""
        problems = []
        expected = {archive_relpath_for_rid(w.work_rid) for s in works for w in s.sample.works}
        for staged in works:
            for work in staged.sample.works:
                problems += list(verify_work_in_archive(self.paths.archive_root, work).problems)
        root = self.paths.archive_root
        if root.is_dir():
            for bucket_dir in root.glob("Archive*/*"):
                for entry in bucket_dir.iterdir():
                    rel = entry.relative_to(root)
                    if entry.name.startswith("."):
                        problems.append(f"half-written or stale copy in the archive: {rel}")
                    elif rel not in {Path(p) for p in expected}:
                        problems.append(f"unexpected work in the archive: {rel}")
        return problems

    def staging_leftovers(self) -> list[str]:
        """Temp files, partial downloads, de-bag dirs or staged works left after a drain (evidence excepted), in the
        staging area and in the works' staging folder under the archive root."""
        roots = [r for r in (self.paths.staging_dir, self.paths.works_dir.parent) if r.is_dir()]
        return sorted(str(p.relative_to(root.parent)) for root in roots for p in root.rglob("*")
                      if p.is_file() and not any(part.startswith(EVIDENCE_PREFIX) for part in p.parts))

    def problems(self, works: Sequence[StagedWork]) -> list[str]:
        """Every invariant of a finished trial of good works: archived once and intact, queues empty, staging
        clean, each work ``synced`` in the ledger."""
        problems = self.archive_problems(works)
        problems += [f"orphan temp file in staging: {name}" for name in self.staging_leftovers()]
        if self.queued():
            problems.append(f"{self.queued()} message(s) still in the work queues")
        problems += [f"message in the DLQ: {m['Body'][:120]} {json.dumps(m.get('MessageAttributes', {}))}"
                     for m in self.dlq_messages()]
        status = self.status()
        for staged in works:
            for work in staged.sample.works:
                row = status.get(work.work_rid, {})
                if row.get("phase") != "synced":
                    problems.append(f"{work.work_rid}: ledger phase {row.get('phase')!r}, not 'synced'")
                problems += [f"{work.work_rid}: {p}" for p in history_problems(row.get("history", []))]
        return problems


def history_problems(history: Sequence[dict[str, Any]]) -> list[str]:
    """A synced work's ledger history: received first, one ``synced`` (the last milestone), one ``work_synced``
    note per work, and only ``duplicate`` notes and the post-sync hook's ``hook_failed``/``hook_ok`` after it."""
    events = [entry.get("event") for entry in history]
    problems = []
    if not events or events[0] not in ("received", "restore_requested"):
        problems.append(f"history does not start with received: {events}")
    if events.count("synced") != 1:
        problems.append(f"history has {events.count('synced')} 'synced' entries: {events}")
    elif any(e not in ("duplicate", "hook_failed", "hook_ok") for e in events[events.index("synced") + 1:]):
        problems.append(f"history goes on after 'synced': {events}")
    synced_works = [e.get("work_rid") for e in history if e.get("event") == "work_synced"]
    if len(synced_works) != len(set(synced_works)):
        problems.append(f"a work synced twice within one version: {synced_works}")
    return problems


@contextmanager
def trial_bench(root: Path, ledger_url: str | None = None) -> Iterator[Bench]:
    """A fresh moto server (dev environment: empty queues) and new finisher folders under ``root``; the ledger a new
    SQLite file in them, or ``ledger_url`` (a fresh database)."""
    with local_aws(DEV, config_dir=root / "aws") as aws:
        yield Bench(aws, FinisherPaths(root / "out"), root, ledger_url)


def sync_count(bench: Bench, rid: str) -> int:
    """How often syncOneWork.sh reported the work synced (its success list, wherever the finisher keeps it)."""
    return sum(path.read_text(encoding="utf-8").split().count(rid)
               for path in bench.paths.root.rglob("synced-works.txt"))


def spec(rid: str, collection: str = "NLM", *, images: int = 3, image_bytes: int = 48 * 1024) -> SampleSpec:
    """A small one-work sample (a few hundred KiB): fast to stage, still several files to extract and sync."""
    return SampleSpec(collection, (rid,), image_groups=2, images_per_group=images, image_bytes=image_bytes)

