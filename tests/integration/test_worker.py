"""The worker loop on in-process moto with in-test stages doing real file work."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.model import EnvironmentConfig
from contract import RestoredWork, archive_relpath_for_rid, message_attributes, staging_key_for_rid
from harness.bags import make_bdrc_bag_zip
from onprem.finisher.errors import BagInvalid, TransferError
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.metrics import LogMetrics
from onprem.finisher.metrics_batch import BatchedMetrics
from onprem.finisher.progress import NullProgress
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.cancel import CancelToken
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.runtime import build_worker
from onprem.finisher.work.settings import Settings, load_settings
from onprem.finisher.work.stages import Fetched, StageContext
from onprem.finisher.work.wiring import real_stages
from tests.integration.worker_support import (
    BUCKET,
    DLQ,
    QUEUE,
    REGION,
    FileStages,
    aws,
    environment,
    fetched_as_the_real_stage,
    make_worker,
    make_zip,
    queue_depth,
    queue_messages,
    send,
    slow_until,
    stage_object,
    wait_for,
    worker_settings,
)

__all__ = ["aws"]
RID = "W1NLM4700"
OTHER_BUCKET = "glacier.staging.nlm2.test.bdrc.org"


def staged_work(tmp_path: Path, clients: AwsClients, rid: str = RID, **kwargs: object) -> RestoredWork:
    return stage_object(clients, make_zip(tmp_path / "zips", rid), rid, **kwargs)  # type: ignore[arg-type]


def ledger_of(settings) -> Ledger:  # type: ignore[no-untyped-def]
    return Ledger(settings.ledger_url)


def test_message_is_deleted_only_after_sync(tmp_path: Path, aws: AwsClients, ledger_url: str) -> None:
    settings = worker_settings(tmp_path, ledger_url=ledger_url)
    stages = FileStages(settings, aws)
    seen_at_sync: list[dict[str, int]] = []
    stages.before["sync"] = lambda rid, ctx: seen_at_sync.append(queue_depth(aws))
    work = staged_work(tmp_path, aws)
    send(aws, work)
    metrics = LogMetrics()
    summary = make_worker(settings, aws, stages, metrics=metrics).run(drain=True)
    assert summary.outcomes == Counter({"synced": 1})
    assert seen_at_sync == [{"visible": 0, "in_flight": 1}]
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0}
    archived = settings.archive_root / archive_relpath_for_rid(RID) / "images"
    assert len(list(archived.iterdir())) == 3
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and record.phase == "synced"
    assert [e["event"] for e in record.history] == ["received", "restore_completed", "downloaded", "debagged",
                                                    "work_synced", "synced"]
    assert all(record.timestamps[p] for p in ("restore_completed", "downloaded", "debagged", "synced"))
    assert record.lease_owner is None
    assert metrics.total("WorksSynced") == 1 and metrics.total("BytesDownloaded") == work.size
    [downloaded] = [e for e in record.history if e["event"] == "downloaded"]
    assert downloaded["object"] == work.key and downloaded["size"] == work.size and "path" not in downloaded
    assert not (settings.staging_dir / "downloads").exists()  # nothing is downloaded to disk


def test_duplicate_messages_are_synced_once(tmp_path: Path, aws: AwsClients, ledger_url: str) -> None:
    settings = worker_settings(tmp_path, ledger_url=ledger_url, concurrency=1)
    stages = FileStages(settings, aws)
    work = staged_work(tmp_path, aws)
    send(aws, work)
    send(aws, work.model_copy(update={"source_event_id": "redelivered-event"}))
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert stages.calls["sync"] == 1
    assert summary.outcomes == Counter({"synced": 1, "duplicate": 1})
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and [e["event"] for e in record.history].count("duplicate") == 1
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0}


def test_a_drain_does_not_end_on_one_empty_reading_of_the_queues(tmp_path: Path, aws: AwsClients,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The counts are read one after the other (moto) and approximate (SQS): a message whose delay ends between
    two of them is in none. Before, one such reading ended the drain with the work left in the queue (CI: a
    waiting continuation of tests/reliability/test_restore_waits.py)."""
    settings = worker_settings(tmp_path, drain_idle_limit=30)
    stages = FileStages(settings, aws)
    work = staged_work(tmp_path, aws)
    sqs = aws.client("sqs", REGION)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"], MessageBody=work.to_body(),
                     MessageAttributes=message_attributes(work), DelaySeconds=1)
    readings: list[dict[str, int]] = []
    real_depth = WorkQueue.depth

    def first_reading_misses_it(queue: WorkQueue) -> dict[str, int]:
        depth = real_depth(queue)
        readings.append(depth)
        return {name: 0 for name in depth} if len(readings) == 1 else depth

    monkeypatch.setattr(WorkQueue, "depth", first_reading_misses_it)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert readings[0]["delayed"] == 1  # the message was there when the first reading said it was not
    assert summary.outcomes == Counter({"synced": 1})
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0}


def test_heartbeat_keeps_a_slow_work_invisible(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, visibility_timeout=1)
    stages = FileStages(settings, aws)
    depths: list[dict[str, int]] = []

    def slow_fetch(rid: str, ctx: StageContext) -> None:
        for _ in range(3):  # well past two visibility timeouts
            slow_until(0.8)(rid, ctx)
            depths.append(queue_depth(aws))

    stages.before["fetch"] = slow_fetch
    send(aws, staged_work(tmp_path, aws))
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"synced": 1})
    assert stages.calls["fetch"] == 1
    assert depths == [{"visible": 0, "in_flight": 1}] * 3


def test_permanent_failure_goes_to_the_dlq_with_its_reason(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path)
    stages = FileStages(settings, aws)

    def bad_bag(rid: str, ctx: StageContext) -> None:
        raise BagInvalid(rid, "checksum mismatch for data/a.tif (sha256 expected 00, got 11)")

    stages.before["debag"] = bad_bag
    work = staged_work(tmp_path, aws)
    send(aws, work)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"failed": 1})
    [dead] = queue_messages(aws, DLQ)
    assert dead["Body"] == work.to_body()
    assert dead["MessageAttributes"]["failure_cause"]["StringValue"] == "bag_invalid"
    assert "checksum mismatch" in dead["MessageAttributes"]["failure_message"]["StringValue"]
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and (record.phase, record.last_cause, record.attempts) == ("failed", "bag_invalid", 1)
    assert stages.calls["sync"] == 0 and queue_depth(aws) == {"visible": 0, "in_flight": 0}


def test_invalid_message_goes_to_the_dlq_at_once(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path)
    send(aws, '{"schema_version": 99, "work_rid": "W1"}')
    summary = make_worker(settings, aws, FileStages(settings, aws)).run(drain=True)
    assert summary.outcomes == Counter({"rejected": 1})
    [dead] = queue_messages(aws, DLQ)
    assert dead["MessageAttributes"]["failure_cause"]["StringValue"] == "contract"
    assert "schema_version 99" in dead["MessageAttributes"]["failure_message"]["StringValue"]
    [row] = ledger_of(settings).works(["W1"])
    assert (row.phase, row.source) == ("failed", "rejected")


def test_retryable_failure_comes_back_and_then_syncs(tmp_path: Path, aws: AwsClients, ledger_url: str) -> None:
    settings = worker_settings(tmp_path, ledger_url=ledger_url)
    stages = FileStages(settings, aws)
    failures = iter([TransferError(RID, "connection reset")])

    def flaky(rid: str, ctx: StageContext) -> None:
        error = next(failures, None)
        if error:
            raise error

    stages.before["fetch"] = flaky
    work = staged_work(tmp_path, aws)
    send(aws, work)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"retry": 1, "synced": 1})
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and record.phase == "synced" and record.attempts == 1
    assert next(e for e in record.history if e["event"] == "retry")["cause"] == "transfer"
    assert queue_messages(aws, DLQ) == []


def test_restore_in_progress_waits_as_a_delayed_continuation(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, drain_idle_limit=0.5, backoff_max=30)
    stages = FileStages(settings, aws)
    work = staged_work(tmp_path, aws)

    def ongoing(parsed: dict, **_: object) -> None:
        parsed["Restore"] = 'ongoing-request="true"'

    s3 = aws.s3(REGION)
    s3.meta.events.register("after-call.s3.HeadObject", ongoing)
    send(aws, work)
    metrics = LogMetrics()
    summary = make_worker(settings, aws, stages, metrics=metrics).run(drain=True)
    s3.meta.events.unregister("after-call.s3.HeadObject", ongoing)
    assert summary.outcomes == Counter({"waiting": 1})
    assert metrics.total("MessagesHidden", reason="restore_wait") == 1
    assert stages.calls["fetch"] == 0
    # a new message, delayed: the old one (and its receive count) is gone
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0} and queue_messages(aws, DLQ) == []
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and (record.phase, record.attempts) == ("received", 0)
    wait = record.history[-1]
    assert (wait["event"], wait["cause"], wait["waits"]) == ("restore_wait", "restore_in_progress", 1)


def test_expired_restore_is_requested_again_then_synced(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, restore_wait_interval=1)
    stages = FileStages(settings, aws)
    work = staged_work(tmp_path, aws, restore=False)  # DEEP_ARCHIVE with no restored copy
    send(aws, work)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"waiting": 1, "synced": 1})
    ledger = ledger_of(settings)
    record = ledger.get(work.idempotency_key)
    assert record is not None and record.phase == "synced"
    [reissued] = [e for e in record.history if e["event"] == "restore_reissued"]
    assert (reissued["tier"], reissued["days"]) == ("Bulk", 3)
    [request] = ledger.restore_requests()
    assert (request["status"], request["key"]) == ("reissued", work.key)


def test_stop_releases_the_work_in_flight_and_a_restart_finishes_it(tmp_path: Path, aws: AwsClients,
                                                                  ledger_url: str) -> None:
    settings = worker_settings(tmp_path, ledger_url=ledger_url, grace_period=0.2)
    stages = FileStages(settings, aws)
    started = threading.Event()

    def endless(rid: str, ctx: StageContext) -> None:
        started.set()
        slow_until(60)(rid, ctx)

    stages.before["debag"] = endless
    work = staged_work(tmp_path, aws)
    send(aws, work)
    worker = make_worker(settings, aws, stages)
    runner = threading.Thread(target=worker.run)
    runner.start()
    assert started.wait(10)
    worker.request_stop()
    runner.join(10)
    assert not runner.is_alive() and worker.summary.outcomes == Counter({"released": 1})
    assert queue_depth(aws) == {"visible": 1, "in_flight": 0}
    record = ledger_of(settings).get(work.idempotency_key)
    # fetch and de-bag are one stage: nothing is recorded downloaded before the work is de-bagged
    assert record is not None and record.phase == "restore_completed" and record.lease_owner is None
    del stages.before["debag"]
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"synced": 1}) and stages.calls["fetch"] == 2


def test_work_near_the_visibility_cap_is_handed_on_and_resumed(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, visibility_timeout=1, max_visibility=3, handoff_margin=2)
    stages = FileStages(settings, aws)
    hops = iter([True])

    def slow_first_time(rid: str, ctx: StageContext) -> None:
        if next(hops, False):
            slow_until(30)(rid, ctx)

    stages.before["debag"] = slow_first_time
    work = staged_work(tmp_path, aws)
    send(aws, work)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"handed_on": 1, "synced": 1})
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and record.phase == "synced" and record.hops == 1
    [handed] = [e for e in record.history if e["event"] == "handed_on"]
    assert (handed["hop"], handed["phase"]) == (1, "restore_completed")
    assert '"continuation":{"hop":1,"phase":"restore_completed"' in (record.message_body or "")
    assert stages.calls["fetch"] == 2 and stages.calls["sync"] == 1


def test_two_workers_never_process_the_same_work_at_once(tmp_path: Path, aws: AwsClients, ledger_url: str) -> None:
    settings = worker_settings(tmp_path, ledger_url=ledger_url, concurrency=2)
    stages = FileStages(settings, aws)
    running, most = Counter[str](), Counter[str]()
    lock = threading.Lock()

    def track(rid: str, ctx: StageContext) -> None:
        with lock:
            running[rid] += 1
            most[rid] = max(most[rid], running[rid])
        slow_until(0.5)(rid, ctx)
        with lock:
            running[rid] -= 1

    stages.before["fetch"] = track
    work = staged_work(tmp_path, aws)
    for n in range(3):
        send(aws, work.model_copy(update={"source_event_id": f"event-{n}"}))
    workers = [make_worker(settings, aws, stages, ledger=Ledger(settings.ledger_url), owner=f"host-{n}:1")
               for n in range(2)]
    threads = [threading.Thread(target=w.run, kwargs={"drain": True}) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    outcomes = workers[0].summary.outcomes + workers[1].summary.outcomes
    assert most[RID] == 1 and stages.calls["sync"] == 1
    assert outcomes["synced"] == 1 and outcomes["duplicate"] == 2
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0}


def test_backlog_is_processed_earliest_restore_expiry_first(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, concurrency=1)
    stages = FileStages(settings, aws)
    now = datetime.now(UTC)
    rids = ["W1NLM4701", "W1NLM4702", "W1NLM4703"]
    expiries = [now + timedelta(days=9), now + timedelta(days=2), now + timedelta(days=5)]
    for rid, expiry in zip(rids, expiries, strict=True):
        work = staged_work(tmp_path, aws, rid)
        send(aws, work.model_copy(update={"restore_expiry": expiry}))
    make_worker(settings, aws, stages).run(drain=True)
    assert [rid for stage, rid in stages.events if stage == "sync"] == ["W1NLM4702", "W1NLM4703", "W1NLM4701"]


def test_lease_held_elsewhere_sends_the_message_back(tmp_path: Path, aws: AwsClients, ledger_url: str) -> None:
    settings = worker_settings(tmp_path, ledger_url=ledger_url, drain_idle_limit=0.3, lease_busy_delay=30)
    stages = FileStages(settings, aws)
    work = staged_work(tmp_path, aws)
    ledger = Ledger(settings.ledger_url)
    ledger.register(work, work.to_body())
    assert ledger.acquire_lease(work.idempotency_key, "other-host:9", 600)
    send(aws, work)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"busy": 1}) and stages.calls["fetch"] == 0
    assert queue_depth(aws) == {"visible": 0, "in_flight": 1}


@pytest.mark.parametrize("queue_name", [QUEUE])
def test_worker_polls_the_configured_queue(tmp_path: Path, aws: AwsClients, queue_name: str) -> None:
    settings = worker_settings(tmp_path)
    worker = make_worker(settings, aws, FileStages(settings, aws))
    assert [q.queue_name for q in worker.queues] == [queue_name]


def test_lost_message_stops_the_work_instead_of_running_unprotected(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, visibility_timeout=1)
    stages = FileStages(settings, aws)

    def message_vanishes(rid: str, ctx: StageContext) -> None:
        sqs = aws.client("sqs", REGION)
        sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"])
        slow_until(10)(rid, ctx)  # interrupted by the heartbeat's refused extension

    stages.before["debag"] = message_vanishes
    work = staged_work(tmp_path, aws)
    send(aws, work)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"lease_lost": 1}) and stages.calls["sync"] == 0
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and record.last_cause == "lease_lost" and record.lease_owner is None


def test_late_event_for_an_overwritten_version_is_not_synced(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path)
    stages = FileStages(settings, aws)
    old = stage_object(aws, make_zip(tmp_path / "zips", RID, seed=1), RID)
    stage_object(aws, make_zip(tmp_path / "zips", RID, seed=2), RID)  # overwritten since the event
    send(aws, old)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"superseded": 1}) and stages.calls["fetch"] == 0
    record = ledger_of(settings).get(old.idempotency_key)
    assert record is not None and record.phase == "superseded"
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0} and queue_messages(aws, DLQ) == []


def test_backlog_deeper_than_the_slots_is_received_once_each(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, concurrency=1, backlog_lookahead=8)
    sqs = aws.client("sqs", REGION)
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=DLQ)["QueueUrl"],
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})})
    stages = FileStages(settings, aws)
    rids = [f"W1NLM47{n:02d}" for n in range(6)]
    for rid in rids:
        send(aws, staged_work(tmp_path, aws, rid))
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"synced": 6})
    assert queue_messages(aws, DLQ) == []
    assert sorted(rid for stage, rid in stages.events if stage == "sync") == rids


def test_an_unexpected_error_is_retried_then_sent_to_the_dlq_with_its_cause(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path, unexpected_attempts=2)
    stages = FileStages(settings, aws)
    stages.before["debag"] = lambda rid, ctx: {}["a key no stage expects"]  # a bug: KeyError
    kept: list[tuple[str, str]] = []
    bundle = replace(stages.bundle(), keep_evidence=lambda rid, key: kept.append((rid, key)))
    work = staged_work(tmp_path, aws)
    send(aws, work)
    summary = build_worker(settings, clients=aws, stages=bundle, metrics=LogMetrics(),
                           progress_for=lambda label, rid: NullProgress()).run(drain=True)
    assert summary.outcomes == Counter({"retry": 1, "failed": 1})
    [dead] = queue_messages(aws, DLQ)
    assert dead["MessageAttributes"]["failure_cause"]["StringValue"] == "unexpected"
    reason = dead["MessageAttributes"]["failure_message"]["StringValue"]
    assert reason.startswith(f"{RID}: unexpected KeyError: 'a key no stage expects'") and "2 time(s)" in reason
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and (record.phase, record.last_cause, record.attempts) == ("failed", "unexpected", 2)
    assert kept == [(RID, work.idempotency_key)]
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0}


def test_a_retryable_failure_on_the_last_receive_goes_to_the_dlq_with_its_cause(
    tmp_path: Path, aws: AwsClients,
) -> None:
    settings = worker_settings(tmp_path)
    stages = FileStages(settings, aws)

    def always_reset(rid: str, ctx: StageContext) -> None:
        raise TransferError(rid, "connection reset by peer")

    stages.before["fetch"] = always_reset
    work = staged_work(tmp_path, aws)
    send(aws, work)
    summary = make_worker(settings, aws, stages).run(drain=True)
    limit = settings.environment.queues.max_receive_count
    assert summary.outcomes == Counter({"retry": limit - 1, "failed": 1})
    [dead] = queue_messages(aws, DLQ)
    assert dead["MessageAttributes"]["failure_cause"]["StringValue"] == "transfer"
    assert f"receive {limit} of maxReceiveCount {limit}" in dead["MessageAttributes"]["failure_message"]["StringValue"]
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and (record.phase, record.last_cause, record.attempts) == ("failed", "transfer", limit)


def test_a_name_too_long_for_the_filesystem_is_a_named_permanent_refusal(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path)
    stages = FileStages(settings, aws)

    def long_name(rid: str, ctx: StageContext) -> None:
        (settings.works_dir / ("n" * 300)).write_bytes(b"")  # the real ENAMETOOLONG of the filesystem

    stages.before["debag"] = long_name
    work = staged_work(tmp_path, aws)
    send(aws, work)
    summary = make_worker(settings, aws, stages).run(drain=True)
    assert summary.outcomes == Counter({"failed": 1})
    [dead] = queue_messages(aws, DLQ)
    assert dead["MessageAttributes"]["failure_cause"]["StringValue"] == "name_too_long"
    assert "n" * 300 in dead["MessageAttributes"]["failure_message"]["StringValue"]
    record = ledger_of(settings).get(work.idempotency_key)
    assert record is not None and (record.phase, record.attempts) == ("failed", 1) and stages.calls["fetch"] == 1


def _two_bucket_settings(root: Path) -> Settings:
    document = environment(root).model_dump(mode="json")
    document["regions"][0]["buckets"].append({"name": OTHER_BUCKET, "collection": "NLM"})
    return load_settings(EnvironmentConfig.model_validate(document), min_free_bytes=0)


def _staged_in(aws: AwsClients, bucket: str, zip_path: Path, rid: str) -> RestoredWork:
    s3 = aws.s3(REGION)
    key = staging_key_for_rid(rid)
    s3.upload_file(str(zip_path), bucket, key)
    head = s3.head_object(Bucket=bucket, Key=key)
    return RestoredWork.build(collection="NLM", bucket=bucket, key=key, region=REGION, size=int(head["ContentLength"]),
                              etag=head["ETag"], version_id=head.get("VersionId"), event_time=datetime.now(UTC),
                              source_event_id=bucket)


def test_one_rid_in_two_buckets_shares_no_temp_dir_or_staged_folder(tmp_path: Path, aws: AwsClients) -> None:
    aws.s3(REGION).create_bucket(Bucket=OTHER_BUCKET)
    settings = _two_bucket_settings(tmp_path)
    settings.ensure_dirs()
    stages = real_stages(settings, aws.s3)
    ctx = StageContext(CancelToken(RID), lambda label: NullProgress())
    first_zip = make_bdrc_bag_zip(tmp_path / "a", rids=[RID], files_per_work=2, file_size=1000)
    second_zip = make_bdrc_bag_zip(tmp_path / "b", rids=[RID], files_per_work=3, file_size=2000)
    first = _staged_in(aws, BUCKET, first_zip, RID)
    second = _staged_in(aws, OTHER_BUCKET, second_zip, RID)
    # the first is fetched and de-bagged, then (a crash, a second slot) the second goes as far before it resumes
    fetched_first, [staged_first] = stages.fetch_debag(first, ctx)
    fetched_second, [staged_second] = stages.fetch_debag(second, ctx)
    assert [(f.object, f.size) for f in (fetched_first, fetched_second)] == [(w.key, w.size) for w in (first, second)]
    assert staged_first.path != staged_second.path
    assert staged_first.path.name == staged_second.path.name == RID  # the sync script takes the RID from it
    assert not list(tmp_path.rglob("*.bag.zip.part")) and not (settings.staging_dir / "downloads").exists()
    images = sorted(p.stat().st_size for p in staged_first.path.rglob("*.tif"))
    assert images == [1000, 1000]


def test_a_drain_whose_receives_are_refused_has_not_drained_its_queue(tmp_path: Path, aws: AwsClients) -> None:
    # found by running the finisher with IAM enforced: AccessDenied on every receive ended as "drained", exit 0
    from tests.reliability.faults import ErrorInjection

    settings = worker_settings(tmp_path)
    send(aws, stage_object(aws, make_zip(tmp_path / "bags", RID), RID))
    refused = ErrorInjection("sqs", "ReceiveMessage", 10**6, 403, "AccessDenied", protocol="json")
    worker = make_worker(settings, aws, FileStages(settings, aws))
    for queue in worker.queues:
        queue.sqs.meta.events.register(refused.event_name, refused)
    summary = worker.run(drain=True)
    for queue in worker.queues:
        queue.sqs.meta.events.unregister(refused.event_name, refused)
    assert refused.injected > 0
    assert QUEUE in summary.queue_errors and "AccessDenied" in summary.queue_errors[QUEUE]
    assert summary.outcomes == Counter()
    depth = queue_depth(aws)
    assert depth["visible"] + depth["in_flight"] == 1 and queue_messages(aws, DLQ) == []  # still queued, untouched


OTHER_REGION = "ap-northeast-2"


def two_queue_settings(tmp_path: Path, aws: AwsClients, first_queue: str, **overrides: object) -> Settings:
    """The test environment with a second region listed first, its (empty) queue and DLQ created on moto."""
    sqs = aws.client("sqs", OTHER_REGION)
    for name in (f"{first_queue}-dlq", first_queue):
        sqs.create_queue(QueueName=name)
    document = environment(tmp_path).model_dump()
    document["regions"].insert(0, {"region": OTHER_REGION, "queue_name": first_queue,
                                   "dlq_name": f"{first_queue}-dlq",
                                   "buckets": [{"name": OTHER_BUCKET, "collection": "NLM"}]})
    return worker_settings(tmp_path, **overrides).model_copy(
        update={"environment": EnvironmentConfig.model_validate(document)})


def test_an_empty_first_queue_never_delays_the_second_queue_s_work(tmp_path: Path, aws: AwsClients) -> None:
    """Every queue is long-polled at once (one poll each): the second queue's message is taken within a second
    while the first queue, empty, waits out its 2 s poll (before: queue after queue, 2 s later at best)."""
    settings = two_queue_settings(tmp_path, aws, "test-first-works", wait_time_seconds=2)
    stages = FileStages(settings, aws)
    taken_at: list[float] = []
    stages.before["fetch"] = lambda rid, ctx: taken_at.append(time.monotonic())
    send(aws, staged_work(tmp_path, aws))
    worker = make_worker(settings, aws, stages)
    assert [q.queue_name for q in worker.queues] == ["test-first-works", QUEUE]
    runner = threading.Thread(target=worker.run)
    started = time.monotonic()
    runner.start()
    wait_for(lambda: worker.summary.outcomes["synced"] == 1, 10, "the second queue's work synced")
    worker.request_stop()
    runner.join(10)
    assert not runner.is_alive()
    assert taken_at[0] - started < 1.0, f"taken {taken_at[0] - started:.2f} s after the start"
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0}


def test_an_idle_finisher_beats_and_still_publishes_the_earliest_restore_expiry(
        tmp_path: Path, aws: AwsClients) -> None:
    """Nothing to work: the heartbeat (per polled region and per host) and HoursToEarliestRestoreExpiry of a
    queued work still reach CloudWatch every round; the stop sends the last round and ends the thread."""
    settings = worker_settings(tmp_path, wait_time_seconds=1, expiry_metric_interval=0)
    ledger = Ledger(settings.ledger_url)
    work = staged_work(tmp_path, aws)  # its copy expires in 5 days; registered (seen), never sent
    ledger.register(work, work.to_body())
    cloudwatch = aws.metrics_client(REGION)
    namespace = settings.environment.monitoring.namespace
    metrics = BatchedMetrics(cloudwatch, namespace, interval_s=0.2)
    worker = build_worker(settings, clients=aws, stages=FileStages(settings, aws).bundle(), metrics=metrics,
                          ledger=ledger, progress_for=lambda label, rid: NullProgress())
    runner = threading.Thread(target=worker.run)
    runner.start()

    def beats() -> float:
        return metric_stat(cloudwatch, namespace, "FinisherHeartbeat", "Sum", region=REGION)

    wait_for(lambda: beats() >= 3, 10, "three heartbeats")
    worker.request_stop()
    runner.join(10)
    assert not runner.is_alive() and metrics._thread is not None and not metrics._thread.is_alive()
    assert worker.summary.outcomes == Counter()
    listed = {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"]))
              for m in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]}
    assert listed == {("FinisherHeartbeat", (("region", REGION),)),
                      ("FinisherHeartbeat", (("host", socket.gethostname()),)),
                      ("HoursToEarliestRestoreExpiry", ())}
    assert 119 < metric_stat(cloudwatch, namespace, "HoursToEarliestRestoreExpiry", "Minimum") <= 120
    assert metrics.dropped == 0


def metric_stat(cloudwatch: object, namespace: str, name: str, stat: str, **dimensions: str) -> float:
    now = datetime.now(UTC)
    response = cloudwatch.get_metric_data(  # type: ignore[attr-defined]
        MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {
            "Namespace": namespace, "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]}, "Period": 3600, "Stat": stat}}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5))
    values = response["MetricDataResults"][0]["Values"]  # one per hour bucket the window touches
    return float({"Minimum": min, "Maximum": max}.get(stat, sum)(values))


@dataclass
class HalfwayStages(FileStages):
    """The download stops halfway until CloudWatch shows the bytes so far: they must go out while it runs."""

    cloudwatch: Any = None
    namespace: str = ""

    def fetch(self, work: RestoredWork, ctx: StageContext) -> tuple[Fetched, bytes]:
        progress = ctx.progress("download")
        progress.start(work.size, 1)
        body = self.clients.s3(work.region).get_object(Bucket=work.bucket, Key=work.key,
                                                       VersionId=work.version_id)["Body"].read()
        half = len(body) // 2
        progress.advance(half)
        wait_for(lambda: metric_stat(self.cloudwatch, self.namespace, "BytesDownloaded", "Sum") == half, 5,
                 "the first half's bytes in CloudWatch while the download runs")
        progress.advance(len(body) - half)
        progress.finish()
        return fetched_as_the_real_stage(work, len(body)), body


def test_bytes_downloaded_reach_cloudwatch_while_the_download_runs(tmp_path: Path, aws: AwsClients) -> None:
    settings = worker_settings(tmp_path)
    cloudwatch = aws.metrics_client(REGION)
    namespace = settings.environment.monitoring.namespace
    stages = HalfwayStages(settings, aws, cloudwatch=cloudwatch, namespace=namespace)
    work = staged_work(tmp_path, aws)
    send(aws, work)
    metrics = BatchedMetrics(cloudwatch, namespace, interval_s=0.2)
    summary = build_worker(settings, clients=aws, stages=stages.bundle(), metrics=metrics,
                           progress_for=lambda label, rid: NullProgress()).run(drain=True)
    assert summary.outcomes == Counter({"synced": 1})
    assert metric_stat(cloudwatch, namespace, "BytesDownloaded", "Sum") == work.size  # the rest, and nothing twice
    assert metric_stat(cloudwatch, namespace, "WorksSynced", "Sum") == 1 and metrics.dropped == 0


class _LeaseLog(Ledger):
    """The real ledger, noting the TTL of every lease taken or renewed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.ttls: list[float] = []

    def acquire_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool:
        self.ttls.append(ttl_s)
        return super().acquire_lease(idempotency_key, owner, ttl_s)

    def renew_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool:
        self.ttls.append(ttl_s)
        return super().renew_lease(idempotency_key, owner, ttl_s)


def test_a_lease_ends_before_its_message_is_visible_again(tmp_path: Path, aws: AwsClients) -> None:
    """Taken just after the receive and renewed with each extension, a lease of the full visibility outlived the
    message's: an attempt killed holding it (kill -9) made the next receive "another finisher holds this work", one
    more receive toward the DLQ (3 kills and that busy receive sent the kill-restart trial's work to the DLQ)."""
    settings = worker_settings(tmp_path, visibility_timeout=1)
    stages = FileStages(settings, aws)
    stages.before["fetch"] = slow_until(1.2)  # past three beats: renewals as well as the first lease
    send(aws, staged_work(tmp_path, aws))
    ledger = _LeaseLog(settings.ledger_url)
    summary = make_worker(settings, aws, stages, ledger=ledger).run(drain=True)
    assert summary.outcomes == Counter({"synced": 1})
    assert len(ledger.ttls) >= 3, ledger.ttls
    assert max(ledger.ttls) <= 0.9 * settings.worker.visibility_timeout, ledger.ttls
