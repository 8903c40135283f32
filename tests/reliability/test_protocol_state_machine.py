"""A stateful property test of the queue/ledger protocol (Hypothesis ``RuleBasedStateMachine``).

Real parts, in process: moto SQS and S3 (``mock_aws``, a redrive policy of 5 receives), the real ledger (SQLite),
the real WorkQueue and WorkRunner, the real fetch, de-bag and sync stages on real one-file bags. Hypothesis
interleaves: new object versions, restore events delivered (and delivered again, with new event ids), SQS
duplicates, processing a message of its choice (reordering), crashes at any checkpoint, visibility timeouts
expiring, and redrives from the DLQ. Invariant: never two archive effects for one object version; in the end,
after everything is redriven and drained, every delivered version has exactly one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule
from moto import mock_aws

from config.model import EnvironmentConfig
from contract import RestoredWork, message_attributes, staging_key_for_rid
from harness.bags import make_bdrc_bag_zip
from onprem.finisher.debag.model import StagedWork
from onprem.finisher.metrics import NullMetrics
from onprem.finisher.progress import NullProgress
from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue
from onprem.finisher.work import faults
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.runtime import build_worker
from onprem.finisher.work.settings import load_settings
from onprem.finisher.work.stages import StageContext, Stages, Synced
from onprem.finisher.work.wiring import real_stages

REGION = "us-east-1"
BUCKET = "glacier.staging.sm.test.bdrc.org"
QUEUE, DLQ = "sm-works", "sm-works-dlq"
RIDS = ("W1SM0001", "W1SM0002")
MAX_RECEIVES = 5


class SimulatedCrash(BaseException):
    """Raised at a checkpoint: unwinds the worker like a crash (no except clause of the worker catches it)."""


def _environment(root: Path) -> EnvironmentConfig:
    (root / "archive").mkdir(parents=True, exist_ok=True)  # the archive is mounted: the finisher never creates it
    return EnvironmentConfig.model_validate({
        "name": "sm", "resource_prefix": "sm",
        "regions": [{"region": REGION, "queue_name": QUEUE, "dlq_name": DLQ,
                     "buckets": [{"name": BUCKET, "collection": "NLM"}]}],
        "queues": {"max_receive_count": MAX_RECEIVES},
        "finisher": {"archive_root": str(root / "archive"), "staging_dir": str(root / "staging"),
                     "state_dir": str(root / "state"), "concurrency": 1},
    })


class QueueLedgerProtocol(RuleBasedStateMachine):
    versions = Bundle("versions")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="protocol-"))
        self._mock = mock_aws()
        self._mock.start()
        self.clients = AwsClients()
        s3 = self.clients.s3(REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.sqs = self.clients.client("sqs", REGION)
        dlq_url = self.sqs.create_queue(QueueName=DLQ)["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sqs.create_queue(QueueName=QUEUE, Attributes={
            "RedrivePolicy": f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": {MAX_RECEIVES}}}'})
        self.settings = load_settings(_environment(self.root), visibility_timeout=600, wait_time_seconds=0,
                                      backoff_base=0, backoff_max=0, lease_busy_delay=0, min_free_bytes=0,
                                      debag_workers=1)
        real = real_stages(self.settings, self.clients.s3)
        self.effects: Counter[str] = Counter()  # archive effects (syncs) per object version
        self.payloads: dict[str, dict[str, str]] = {}  # object version → its payload's sha256 by path
        self.wrong_content: list[str] = []
        self.current_key: str | None = None

        def sync(staged: StagedWork, ctx: StageContext) -> Synced:
            expected = self.payloads.get(self.current_key or "")
            if expected is not None and _tree_digests(staged.path) != expected:
                self.wrong_content.append(f"{staged.work_rid}: staged copy is not version {self.current_key}")
            result = real.sync(staged, ctx)
            self.effects[self.current_key or "?"] += 1
            return result

        stages = Stages(fetch_debag=real.fetch_debag, debag=real.debag, sync=sync, works_dir=real.works_dir)
        worker = build_worker(self.settings, clients=self.clients, stages=stages, metrics=NullMetrics(),
                              progress_for=lambda _label, _rid: NullProgress())
        self.runner, self.queue = worker.runner, WorkQueue(self.sqs, REGION, QUEUE, DLQ)
        self.delivered: set[str] = set()
        self.held: list[ReceivedMessage] = []  # received and crashed or left: in flight until they "expire"
        self.crash_at: str | None = None
        self._known_depth: dict[str, int] | None = None
        self._real_checkpoint = faults.checkpoint
        faults.checkpoint = self._checkpoint  # type: ignore[assignment]

    def _checkpoint(self, name: str, *, work_rid: str | None = None) -> None:
        if name == self.crash_at:
            self.crash_at = None
            raise SimulatedCrash(name)

    # --- the world ---------------------------------------------------------------------------------------------
    @rule(target=versions, rid=st.sampled_from(RIDS), seed=st.integers(0, 2**16))
    def upload_and_restore_a_version(self, rid: str, seed: int) -> RestoredWork:
        folder = self.root / "bags" / uuid.uuid4().hex[:8]
        folder.mkdir(parents=True)
        zip_path = make_bdrc_bag_zip(folder, rids=[rid], files_per_work=1, file_size=512 + seed % 512)
        s3, key = self.clients.s3(REGION), staging_key_for_rid(rid)
        s3.upload_file(str(zip_path), BUCKET, key, ExtraArgs={"StorageClass": "DEEP_ARCHIVE"})
        head = s3.head_object(Bucket=BUCKET, Key=key)
        s3.restore_object(Bucket=BUCKET, Key=key, VersionId=head["VersionId"],
                          RestoreRequest={"Days": 3, "GlacierJobParameters": {"Tier": "Bulk"}})
        version = RestoredWork.build(collection="NLM", bucket=BUCKET, key=key, region=REGION,
                                     size=int(head["ContentLength"]), etag=head["ETag"], version_id=head["VersionId"],
                                     event_time=datetime.now(UTC), source_event_id=str(uuid.uuid4()),
                                     storage_class="DEEP_ARCHIVE",
                                     restore_expiry=datetime.now(UTC) + timedelta(days=3))
        self.payloads[version.idempotency_key] = _zip_payload_digests(zip_path, rid)
        self.deliver(version, new_event_id=False)  # its restore event (later deliveries are repeats)
        return version

    @rule(version=versions, new_event_id=st.booleans())
    def deliver(self, version: RestoredWork, new_event_id: bool) -> None:
        """The restore event reaches the queue again: an SQS duplicate, or a new event id (Lambda dedupe bypassed)."""
        self._known_depth = None
        message = version.model_copy(update={"source_event_id": str(uuid.uuid4())}) if new_event_id else version
        self.sqs.send_message(QueueUrl=self.queue.queue_url, MessageBody=message.to_body(),
                              MessageAttributes=message_attributes(message))
        self.delivered.add(version.idempotency_key)

    def _depth(self) -> dict[str, int]:
        """The queues' depth for the preconditions, asked before every step for each rule drawn: read once per step
        (two moto calls), since the queues change only in a rule (each forgets it); one read per question was
        about a quarter of the test's time."""
        if self._known_depth is None:
            self._known_depth = self.queue.depth()
        return self._known_depth

    @precondition(lambda self: self._depth()["visible"] > 0)
    @rule(pick=st.integers(0, 9), crash=st.one_of(st.none(), st.sampled_from(faults.CHECKPOINTS)))
    def process_one(self, pick: int, crash: str | None) -> None:
        """Receive a batch, process the message Hypothesis picks (order is SQS's business), release the others."""
        self._known_depth = None
        batch = self.queue.receive(10, 0, self.settings.worker.visibility_timeout)
        if not batch:
            return
        chosen = batch[pick % len(batch)]
        for other in batch:
            if other is not chosen:
                self.queue.release(other)
        self.crash_at = crash
        self.current_key = _key_of(chosen.body)
        try:
            event(f"processed: {self.runner.process(self.queue, chosen)}")
        except SimulatedCrash:
            event(f"crashed at {crash}")
            self.held.append(chosen)
        finally:
            self.crash_at = None

    @precondition(lambda self: bool(self.held))
    @rule()
    def visibility_expires(self) -> None:
        """Every message a crashed attempt left in flight becomes visible again."""
        self._known_depth = None
        for message in self.held:
            self.queue.release(message)
        self.held.clear()

    @precondition(lambda self: self._depth()["dlq"] > 0)
    @rule()
    def redrive(self) -> None:
        self._known_depth = None
        self.queue.redrive(wait_s=0)

    # --- invariants ----------------------------------------------------------------------------------------------
    @invariant()
    def never_two_archive_effects_for_one_version(self) -> None:
        assert not [key for key, count in self.effects.items() if count > 1], self.effects

    @invariant()
    def each_archive_effect_carries_its_own_version(self) -> None:
        assert self.wrong_content == []

    def teardown(self) -> None:
        try:
            self._drain_everything()
            phases = {record.idempotency_key: record.phase for record in self.runner.ledger.works()}
            # a version overwritten before its turn is skipped on purpose, visibly ("superseded" in the ledger)
            lost = sorted(key for key in self.delivered if self.effects[key] != 1
                          and not (self.effects[key] == 0 and phases.get(key) == "superseded"))
            assert not lost, f"delivered versions neither archived once nor superseded: {lost} {phases}"
            assert self.queue.depth() == {"visible": 0, "in_flight": 0, "delayed": 0, "dlq": 0}
        finally:
            faults.checkpoint = self._real_checkpoint  # type: ignore[assignment]
            self._mock.stop()
            shutil.rmtree(self.root, ignore_errors=True)

    def _drain_everything(self) -> None:
        for _ in range(40):
            self.visibility_expires()
            self.redrive()
            batch = self.queue.receive(10, 0, self.settings.worker.visibility_timeout)
            if not batch and self.queue.depth()["dlq"] == 0:
                return
            for message in batch:
                self.current_key = _key_of(message.body)
                self.runner.process(self.queue, message)
        raise AssertionError("the queues did not drain")


def _zip_payload_digests(zip_path: Path, rid: str) -> dict[str, str]:
    prefix = f"{rid}.bag/data/"
    with zipfile.ZipFile(zip_path) as zf:
        return {info.filename.removeprefix(prefix): hashlib.sha256(zf.read(info)).hexdigest()
                for info in zf.infolist() if info.filename.startswith(prefix) and not info.is_dir()}


def _tree_digests(folder: Path) -> dict[str, str]:
    """The staged payload (the bag's tag files, kept in ``<RID>.bag/``, left out)."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in folder.rglob("*") if path.is_file() and not path.relative_to(folder).parts[0].endswith(".bag")}


def _key_of(body: str) -> str | None:
    try:
        return str(json.loads(body)["idempotency_key"])
    except (ValueError, KeyError, TypeError):
        return None


#: examples of 15 steps (~1 s each on an idle 2-core machine): in ``make test``, and with ``--run-long``;
#: ``RELIABILITY_SM_EXAMPLES`` overrides both
EXAMPLES, LONG_EXAMPLES = 12, 50


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],  # shrinking re-runs real I/O: too slow
        print_blob=True,
    )


@pytest.fixture(autouse=True)
def examples_of_this_run(request: pytest.FixtureRequest) -> None:
    """The run's example count, set before Hypothesis reads the test case's settings."""
    default = LONG_EXAMPLES if request.config.getoption("--run-long") else EXAMPLES
    QueueLedgerProtocol.TestCase.settings = _settings(int(os.environ.get("RELIABILITY_SM_EXAMPLES", default)))


test_queue_ledger_protocol = pytest.mark.timeout(240)(QueueLedgerProtocol.TestCase)
