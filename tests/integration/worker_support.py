"""Shared pieces of the worker tests: a one-region environment on in-process moto, staged objects, messages,
and in-test stages that do real file work (S3 read and unzip in one stage, no zip on disk; copy into the archive)
with hooks to slow them.
"""

from __future__ import annotations

import io
import shutil
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from moto import mock_aws

from config.model import EnvironmentConfig
from contract import RestoredWork, archive_relpath_for_rid, message_attributes, staging_key_for_rid
from onprem.finisher.debag.model import StagedWork
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.metrics import LogMetrics
from onprem.finisher.progress import NullProgress
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.runtime import build_worker
from onprem.finisher.work.settings import Settings, load_settings
from onprem.finisher.work.stages import Fetched, StageContext, Stages, Synced
from onprem.finisher.work.worker import Worker

REGION = "us-east-1"
BUCKET = "glacier.staging.nlm.test.bdrc.org"
QUEUE, DLQ = "test-works", "test-works-dlq"


def environment(root: Path) -> EnvironmentConfig:
    (root / "archive").mkdir(parents=True, exist_ok=True)  # the archive is mounted: the finisher never creates it
    return EnvironmentConfig.model_validate({
        "name": "test", "resource_prefix": "test",
        "regions": [{"region": REGION, "queue_name": QUEUE, "dlq_name": DLQ,
                     "buckets": [{"name": BUCKET, "collection": "NLM"}]}],
        "restore": {"tier": "Bulk", "days": 3},
        "finisher": {"archive_root": str(root / "archive"), "staging_dir": str(root / "staging"),
                     "state_dir": str(root / "state"), "concurrency": 2},
    })


def worker_settings(root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"visibility_timeout": 30, "wait_time_seconds": 0, "backoff_base": 0, "backoff_max": 1,
                              "grace_period": 5, "lease_busy_delay": 1, "drain_idle_limit": 5,
                              "heartbeat_fraction": 1 / 3}
    values.update(overrides)
    return load_settings(environment(root), **values)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsClients]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "FINISHER_SETTINGS_FILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        clients = AwsClients()
        s3 = clients.s3(REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sqs = clients.client("sqs", REGION)
        sqs.create_queue(QueueName=DLQ)
        sqs.create_queue(QueueName=QUEUE)
        yield clients


def make_zip(folder: Path, rid: str, files: int = 3, seed: int = 0) -> Path:
    """A plain work zip ``RID/images/…`` of small random files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rid}-{seed}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(files):
            zf.writestr(f"{rid}/images/{rid}-I1_{i:04d}.tif", f"{rid}:{seed}:{i}".encode() * 200)
    return path


def stage_object(clients: AwsClients, zip_path: Path, rid: str, *, restore: bool = True,
                 expiry_days: int = 5) -> RestoredWork:
    """Upload as DEEP_ARCHIVE under the staging key (restored unless told otherwise) and build its message."""
    s3 = clients.s3(REGION)
    key = staging_key_for_rid(rid)
    s3.upload_file(str(zip_path), BUCKET, key, ExtraArgs={"StorageClass": "DEEP_ARCHIVE"})
    if restore:
        s3.restore_object(Bucket=BUCKET, Key=key, RestoreRequest={"Days": 3, "GlacierJobParameters": {"Tier": "Bulk"}})
    head = s3.head_object(Bucket=BUCKET, Key=key)
    return RestoredWork.build(collection="NLM", bucket=BUCKET, key=key, region=REGION,
                              size=int(head["ContentLength"]), etag=head["ETag"], version_id=head.get("VersionId"),
                              event_time=datetime.now(UTC), source_event_id=str(uuid.uuid4()),
                              storage_class="DEEP_ARCHIVE",
                              restore_expiry=datetime.now(UTC) + timedelta(days=expiry_days))


def send(clients: AwsClients, work: RestoredWork | str, queue: str = QUEUE) -> None:
    sqs = clients.client("sqs", REGION)
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    if isinstance(work, str):
        sqs.send_message(QueueUrl=url, MessageBody=work)
    else:
        sqs.send_message(QueueUrl=url, MessageBody=work.to_body(), MessageAttributes=message_attributes(work))


def queue_messages(clients: AwsClients, queue: str) -> list[dict[str, Any]]:
    """Every visible message of ``queue`` (made visible again at once)."""
    sqs = clients.client("sqs", REGION)
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                AttributeNames=["All"]).get("Messages", [])
    for message in found:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return found


def queue_depth(clients: AwsClients, queue: str = QUEUE) -> dict[str, int]:
    sqs = clients.client("sqs", REGION)
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {"visible": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"])}


def wait_for(predicate: Callable[[], Any], deadline_s: float, what: str) -> Any:
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class FileStages:
    """Real file work: read the object with boto3 into memory and unzip it (one fetch + de-bag stage, as the real
    one: no zip on disk, the ``Fetched`` the real stage returns), copy into the archive. Hooks (``before["fetch"]``,
    ``["debag"]``, ``["sync"]``) let a test slow or fail a step."""

    settings: Settings
    clients: AwsClients
    calls: Counter[str] = field(default_factory=Counter)
    before: dict[str, Callable[[str, StageContext], None]] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, stage: str, rid: str, ctx: StageContext) -> None:
        with self._lock:
            self.calls[stage] += 1
            self.events.append((stage, rid))
        hook = self.before.get(stage)
        if hook:
            hook(rid, ctx)
        ctx.cancel.check()

    def fetch_debag(self, work: RestoredWork, ctx: StageContext) -> tuple[Fetched, list[StagedWork]]:
        fetched, body = self.fetch(work, ctx)
        return fetched, self._unzip(work.work_rid, io.BytesIO(body), ctx)

    def fetch(self, work: RestoredWork, ctx: StageContext) -> tuple[Fetched, bytes]:
        """The object's bytes (the test bags are small) and what the real stage says of them: its key, its size;
        no checksum is checked here."""
        self._enter("fetch", work.work_rid, ctx)
        body = io.BytesIO()
        progress = ctx.progress("download")  # as the real fetch does: the bytes as they arrive (BytesDownloaded)
        progress.start(work.size, 1)
        self.clients.s3(work.region).download_fileobj(work.bucket, work.key, body,
                                                      ExtraArgs={"VersionId": work.version_id},
                                                      Callback=progress.advance)
        progress.finish()
        return fetched_as_the_real_stage(work, len(body.getvalue())), body.getvalue()

    def debag(self, work_rid: str, zip_path: Path, version_tag: str | None, ctx: StageContext) -> list[StagedWork]:
        return self._unzip(work_rid, zip_path, ctx)

    def _unzip(self, work_rid: str, zip_source: Path | BinaryIO, ctx: StageContext) -> list[StagedWork]:
        self._enter("debag", work_rid, ctx)
        with zipfile.ZipFile(zip_source) as zf:
            zf.extractall(self.settings.works_dir)
        return [StagedWork(work_rid, self.settings.works_dir / work_rid)]

    def sync(self, staged: StagedWork, ctx: StageContext) -> Synced:
        self._enter("sync", staged.work_rid, ctx)
        target = self.settings.archive_root / archive_relpath_for_rid(staged.work_rid)
        shutil.copytree(staged.path, target, dirs_exist_ok=True)
        shutil.rmtree(staged.path)
        return Synced(staged.work_rid, target)

    def bundle(self) -> Stages:
        return Stages(fetch_debag=self.fetch_debag, debag=self.debag, sync=self.sync, works_dir=self.settings.works_dir)


def fetched_as_the_real_stage(work: RestoredWork, size: int) -> Fetched:
    """The ``Fetched`` of a test double's read of ``work``: named by its key, nothing on disk, no checksum checked."""
    return Fetched(work.key, size, checksum_note="not checked (a test double's fetch)")


def slow_until(seconds: float) -> Callable[[str, StageContext], None]:
    """A hook that works for ``seconds`` in small units, checking the cancel token between them."""

    def hook(rid: str, ctx: StageContext) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ctx.cancel.check()
            time.sleep(0.02)

    return hook


def make_worker(settings: Settings, clients: AwsClients, stages: FileStages, *, metrics: LogMetrics | None = None,
                ledger: Ledger | None = None, owner: str | None = None) -> Worker:
    return build_worker(settings, clients=clients, stages=stages.bundle(), metrics=metrics or LogMetrics(),
                        ledger=ledger, progress_for=lambda label, rid: NullProgress(), owner=owner)
