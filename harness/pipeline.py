"""The demo's steps without the printing, shared by ``python -m harness`` (``make demo``) and ``tests/e2e``.

stage (upload as DEEP_ARCHIVE) → request restores (finisher CLI) → wait for the restored copies → publish the
"Object Restore Completed" events on each region's bus → the rule's target hands them to the real
notify_restore handler → ``finisher run --drain`` (a separate process) → status and archive verification.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.bags import SampleZip
from harness.events import (
    RestoreNotCompleted,
    as_delivered,
    as_put_events_entry,
    restore_completed_event,
    restore_expiry,
)
from harness.lambda_runtime import Invocation, invoke_notify_restore
from harness.moto_env import MOTO_ACCOUNT, LocalAws
from onprem.finisher.debag.staging import STAGING_FOLDER


@dataclass(frozen=True)
class StagedObject:
    """A sample zip uploaded to its collection's staging bucket."""

    sample: SampleZip
    region: str
    bucket: str
    key: str
    version_id: str

    @property
    def work_rid(self) -> str:
        return self.sample.key_rid


@dataclass(frozen=True)
class FinisherPaths:
    """Where the finisher keeps its archive, staging area and ledger for one demo run."""

    root: Path

    @property
    def archive_root(self) -> Path:
        return self.root / "archive"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    @property
    def works_dir(self) -> Path:
        """Where the de-bag stages works by default: hidden under the archive root (FINISHER_ARCHIVE_STAGING_DIR)."""
        return self.archive_root / STAGING_FOLDER / "works"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def environ(self, environment_name: str) -> dict[str, str]:
        return {
            "BDRC_ENV": environment_name,
            "FINISHER_ARCHIVE_ROOT": str(self.archive_root),
            "FINISHER_STAGING_DIR": str(self.staging_dir),
            "FINISHER_STATE_DIR": str(self.state_dir),
        }


def expected_works(staged: Sequence[StagedObject]) -> dict[str, list[str]]:
    """Key RID → the RIDs of the bags its zip holds (what ``work_status.status_problems`` checks)."""
    return {item.work_rid: [w.work_rid for w in item.sample.works] for item in staged}


def finisher_command(*args: str) -> list[str]:
    """The ``finisher`` console script of this interpreter's environment (or its module when not installed)."""
    script = Path(sys.executable).with_name("finisher")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-c", "from onprem.finisher.cli.app import main; main()", *args]


def stage_sample(aws: LocalAws, sample: SampleZip) -> StagedObject:
    """Upload ``sample`` as DEEP_ARCHIVE under its staging key in the first bucket of its collection."""
    matches = aws.environment.buckets_of_collection(sample.collection)
    if not matches:
        raise KeyError(f"{sample.key_rid}: environment {aws.environment.name} has no bucket for {sample.collection}")
    region, bucket = matches[0]
    s3 = aws.client("s3", region.region)
    s3.upload_file(str(sample.path), bucket.name, sample.staging_key, ExtraArgs={"StorageClass": "DEEP_ARCHIVE"})
    head = s3.head_object(Bucket=bucket.name, Key=sample.staging_key)
    return StagedObject(sample, region.region, bucket.name, sample.staging_key, str(head["VersionId"]))


def wait_restored(aws: LocalAws, staged: StagedObject, deadline_s: float = 30.0) -> dict[str, Any]:
    """Poll HEAD until the object shows a completed restore (moto completes at once); returns the HEAD."""
    s3 = aws.client("s3", staged.region)
    deadline = time.monotonic() + deadline_s
    while True:
        head = s3.head_object(Bucket=staged.bucket, Key=staged.key, VersionId=staged.version_id)
        try:
            restore_expiry(head.get("Restore"))
            return dict(head)
        except RestoreNotCompleted:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass(frozen=True)
class Delivery:
    """An event published on the bus, as the rule's target received it, and the handler's outcome."""

    staged: StagedObject
    event: dict[str, Any]
    invocation: Invocation


def deliver_restore_events(aws: LocalAws, staged: Sequence[StagedObject], work_dir: Path) -> list[Delivery]:
    """Publish each object's restore event on its region's bus; hand what the rule delivered to the handler
    (each region's function in its own process, the regions in parallel)."""
    delivered = {region: _publish_region(aws, region, [s for s in staged if s.region == region])
                 for region in aws.regions}
    delivered = {region: pairs for region, pairs in delivered.items() if pairs}
    with ThreadPoolExecutor(max_workers=max(len(delivered), 1)) as pool:
        invocations = {region: pool.submit(invoke_notify_restore, aws, region, [e for _, e in pairs], work_dir)
                       for region, pairs in delivered.items()}
    return [Delivery(item, event, invocation)
            for region, pairs in delivered.items()
            for (item, event), invocation in zip(pairs, invocations[region].result(), strict=True)]


def _publish_region(aws: LocalAws, region: str,
                    staged: Sequence[StagedObject]) -> list[tuple[StagedObject, dict[str, Any]]]:
    """Put each restore event on ``region``'s bus; return the events as the rule's target received them."""
    if not staged:
        return []
    events = aws.client("events", region)
    sent = {}
    for item in staged:
        head = wait_restored(aws, item)
        event = restore_completed_event(bucket=item.bucket, key=item.key, region=region, head=head,
                                        account=MOTO_ACCOUNT)
        response = events.put_events(Entries=[as_put_events_entry(event)])
        sent[response["Entries"][0]["EventId"]] = (item, event)
    received = _receive_all(aws, region, len(sent))
    pairs = [(sent[e["id"]][0], as_delivered(sent[e["id"]][1], e)) for e in received if e["id"] in sent]
    if len(pairs) != len(sent):
        raise RuntimeError(f"{region}: the restore rule delivered {len(pairs)} of {len(sent)} events")
    return pairs


def _receive_all(aws: LocalAws, region: str, expected: int, deadline_s: float = 10.0) -> list[dict[str, Any]]:
    sqs, url = aws.client("sqs", region), aws.event_queue_url(region)
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + deadline_s
    while len(events) < expected and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []):
            events.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return events


#: short polls on a local server (the default 20 s long poll would idle between two queues), and a drain that
#: gives up after 20 s when a failed work waits for its backoff
DEMO_FINISHER_ENV = {"FINISHER_WAIT_TIME_SECONDS": "1", "FINISHER_DRAIN_IDLE_LIMIT": "20"}


def run_finisher(
    aws: LocalAws, paths: FinisherPaths, args: Sequence[str], *, on_line: Callable[[str], None] | None = None,
    timeout_s: float = 120.0, extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one finisher command as a separate process against the server; stream its lines to ``on_line``.

    The environment: the server's AWS variables, the demo's paths, ``DEMO_FINISHER_ENV``, then ``extra_env``.
    A command still running after ``timeout_s`` is killed (returncode < 0).
    """
    settings = {**paths.environ(aws.environment.name), **DEMO_FINISHER_ENV, "PYTHONUNBUFFERED": "1",
                "COLUMNS": "160", **dict(extra_env or {})}
    paths.archive_root.mkdir(parents=True, exist_ok=True)  # the archive is mounted before a finisher starts
    env = aws.subprocess_env(**settings)
    command = finisher_command(*args)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        returncode = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        returncode = process.wait()
    reader.join(timeout=5)
    return subprocess.CompletedProcess(command, returncode, "".join(lines), "")


def finisher_stdout(aws: LocalAws, paths: FinisherPaths, args: Sequence[str], *, timeout_s: float = 60.0) -> str:
    """A finisher command's standard output alone (its logs on stderr kept apart), e.g. ``status --json``."""
    settings = {**paths.environ(aws.environment.name), **DEMO_FINISHER_ENV}
    result = subprocess.run(finisher_command(*args), env=aws.subprocess_env(**settings), capture_output=True,
                            text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"finisher {' '.join(args)} exited with {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def pending_messages(aws: LocalAws) -> dict[str, int]:
    """Messages left in every work queue and DLQ (``queue name → count``); all zero when drained."""
    counts = {}
    for region in aws.environment.regions:
        counts[region.queue_name] = aws.queue_depth(aws.queue_url(region.region), region.region)
        counts[region.dlq_name] = aws.queue_depth(aws.dlq_url(region.region), region.region)
    return counts


MARKER = ".bdrc-restore-demo"


def prepare_out_dir(out_dir: Path) -> FinisherPaths:
    """A fresh demo directory. An existing one is emptied only if an earlier demo made it (it holds the marker)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise FileExistsError(f"{out_dir} exists and was not made by the demo: choose another --out")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("made by `python -m harness`; safe to delete\n", encoding="utf-8")
    return FinisherPaths(out_dir)
