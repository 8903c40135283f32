"""Delivery faults through the whole worker (``finisher run --drain`` as a separate process, real stages, moto).

Repeats (same restore twice, redriven messages, two finishers at once), lies (an old event after an overwrite),
lost handles (heartbeat refused), throttling everywhere, restores still running, expired or already re-requested.
After each: the work in the archive exactly once and intact, every message gone (or in the DLQ with a reason), the
ledger telling what happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract import idempotency_key_for
from contract.keys import archive_relpath_for_rid
from harness.proxy import ShapingProxy
from tests.reliability.bad_inputs import good_zip
from tests.reliability.harness import Bench, spec, sync_count, trial_bench
from tests.reliability.inject_boot import injected

RID = "W1NLM4700"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with trial_bench(tmp_path) as running:
        yield running


def _history(bench: Bench, rid: str) -> list[str]:
    return [entry["event"] for entry in bench.status()[rid]["history"]]


def _error(service: str, operation: str, times: int, status: int, code: str, **extra: Any) -> dict[str, Any]:
    protocol = "json" if service == "sqs" else "rest-xml"
    return {"kind": "error", "service": service, "operation": operation, "times": times, "status": status,
            "code": code, "protocol": protocol, **extra}


# --- repeats ----------------------------------------------------------------------------------------------------
def test_same_restore_announced_twice_with_different_event_ids_is_synced_once(bench: Bench) -> None:
    work = bench.stage(spec(RID))
    again = bench.message_for(work.bucket, work.key, work.version_id, "NLM", work.region, event_id="another-event")
    assert again.idempotency_key == work.message.idempotency_key
    bench.send(again)
    assert bench.drain_until_quiet() == 0
    assert bench.problems([work]) == [] and sync_count(bench, RID) == 1
    assert _history(bench, RID).count("synced") == 1 and "duplicate" in _history(bench, RID)


def test_redriven_messages_sync_a_failed_work_once_and_a_synced_one_never_again(bench: Bench) -> None:
    work = bench.stage(spec(RID), send=False)
    dlq = bench.aws.dlq_url(work.region)
    sqs = bench.sqs(work.region)
    sqs.send_message(QueueUrl=dlq, MessageBody=work.message.to_body())  # as if an earlier attempt had failed
    assert bench.run(["redrive"]) == 0
    assert bench.drain_until_quiet() == 0
    assert bench.problems([work]) == [] and sync_count(bench, RID) == 1

    sqs.send_message(QueueUrl=dlq, MessageBody=work.message.to_body())  # redriven again: a new message id
    assert bench.run(["redrive"]) == 0
    assert bench.drain_until_quiet() == 0
    assert bench.problems([work]) == [] and sync_count(bench, RID) == 1
    assert _history(bench, RID)[-1] == "duplicate"


def test_two_finishers_racing_for_one_work_sync_it_once(backend_bench: Bench) -> None:
    """Both start at once on a fresh state directory (test_ledger_start.py forces that race) and both get a
    message of the same object version."""
    bench = backend_bench  # the ledger on the id's backend: claims, leases, a restart
    work = bench.stage(spec(RID, images=6))
    bench.send(bench.message_for(work.bucket, work.key, work.version_id, "NLM", work.region, event_id="twin"))
    first, second = bench.start(["run", "--drain"]), bench.start(["run", "--drain"])
    assert (first.wait(timeout=120), second.wait(timeout=120)) == (0, 0)
    assert bench.problems([work]) == [] and sync_count(bench, RID) == 1


# --- lies ---------------------------------------------------------------------------------------------------------
def test_old_event_after_an_overwrite_does_not_replace_the_newer_version(bench: Bench) -> None:
    old = bench.stage(spec(RID, image_bytes=40 * 1024), send=False)
    new = bench.stage(spec(RID, image_bytes=56 * 1024))
    assert bench.drain_until_quiet() == 0 and bench.archive_problems([new]) == []
    bench.send(old.message)  # the first version's restore event, late
    assert bench.drain_until_quiet() == 0
    assert bench.archive_problems([new]) == [], "the archive went back to (or mixed in) the older version"
    assert bench.queued() == 0 and bench.dlq_messages() == [] and sync_count(bench, RID) == 1
    (row,) = [r for r in bench.ledger_rows() if r["version_id"] == old.version_id]
    assert row["phase"] == "superseded"  # visibly skipped, with the current version named in its history


def test_message_whose_etag_no_longer_matches_goes_to_the_dlq_as_object_changed(bench: Bench) -> None:
    old = bench.stage(spec(RID, image_bytes=40 * 1024), send=False)
    unpinned = old.message.model_copy(update={"version_id": None})
    body = json.loads(unpinned.to_body())
    body["idempotency_key"] = idempotency_key_for(old.bucket, old.key, None, old.message.etag)
    bench.stage(spec(RID, image_bytes=56 * 1024), send=False)  # overwritten since the event
    bench.send(json.dumps(body), region=old.region)
    assert bench.drain_until_quiet() == 0
    (in_dlq,) = bench.dlq_messages()
    assert in_dlq["MessageAttributes"]["failure_cause"]["StringValue"] == "object_changed"
    assert not (bench.paths.archive_root / archive_relpath_for_rid(RID)).exists()


def test_message_for_a_bucket_outside_the_environment_is_refused(bench: Bench) -> None:
    region = bench.aws.regions[0]
    s3 = bench.aws.client("s3", region)
    foreign = "someone-elses-bucket.bdrc.org"
    s3.create_bucket(Bucket=foreign, CreateBucketConfiguration={"LocationConstraint": region})
    zip_path = good_zip(bench.scratch / "build", RID)
    key = f"Archive0/00/{RID}/{RID}.bag.zip"
    put = s3.put_object(Bucket=foreign, Key=key, Body=zip_path.read_bytes())
    bench.send(bench.message_for(foreign, key, put.get("VersionId"), "NLM", region))
    assert bench.drain_until_quiet() == 0
    (in_dlq,) = bench.dlq_messages()
    assert in_dlq["MessageAttributes"]["failure_cause"]["StringValue"] == "foreign_bucket"
    assert foreign in in_dlq["MessageAttributes"]["failure_message"]["StringValue"]
    assert not (bench.paths.archive_root / archive_relpath_for_rid(RID)).exists()
    assert not list(bench.paths.staging_dir.rglob(f"{RID}*"))


# --- lost handles, throttling ---------------------------------------------------------------------------------------
def test_refused_heartbeat_stops_the_work_and_the_redelivery_finishes_it(backend_bench: Bench) -> None:
    bench = backend_bench  # the ledger on the id's backend: claims, leases, a restart
    work = bench.stage(spec(RID, images=6))
    faults = [_error("sqs", "ChangeMessageVisibility", 1, 400, "ReceiptHandleIsInvalid")]
    assert bench.drain_until_quiet(env={"FINISHER_HEARTBEAT_FRACTION": "0.05"}, faults=faults) == 0
    assert injected(bench.fault_report) == ["sqs.ChangeMessageVisibility ReceiptHandleIsInvalid"]
    assert bench.problems([work]) == [] and sync_count(bench, RID) == 1


def test_extensions_failing_longer_than_the_visibility_never_run_one_work_twice(backend_bench: Bench) -> None:
    """The message reappears while its work still runs (every heartbeat extension fails, the download is slowed
    to ≈5 s by the proxy): the other slot receives it again and must not work on the same work beside it."""
    bench = backend_bench  # the ledger on the id's backend: claims, leases, a restart
    work = bench.stage(spec(RID, images=6, image_bytes=200 * 1024))
    port = int(bench.aws.endpoint_url.rsplit(":", 1)[1])
    faults = [_error("sqs", "ChangeMessageVisibility", 40, 503, "ServiceUnavailable")]
    with ShapingProxy("127.0.0.1", port, rate_bytes_per_s=600_000) as proxy:
        code = bench.drain_until_quiet(env={"AWS_ENDPOINT_URL": proxy.url, "FINISHER_FETCH_CONCURRENCY": "1"},
                                       faults=faults)
    assert code == 0
    assert injected(bench.fault_report), "no extension was refused"
    assert bench.problems([work]) == [] and sync_count(bench, RID) == 1


def test_slow_down_and_throttling_everywhere_lose_nothing(bench: Bench) -> None:
    work = bench.stage(spec(RID))
    faults = [
        _error("s3", "HeadObject", 2, 503, "SlowDown"),
        _error("s3", "GetObject", 3, 503, "SlowDown"),
        _error("sqs", "ReceiveMessage", 3, 400, "ThrottlingException"),
        _error("sqs", "ChangeMessageVisibility", 2, 400, "ThrottlingException"),
        _error("sqs", "DeleteMessage", 5, 503, "ServiceUnavailable"),  # every attempt of the first delete
    ]
    # a visibility longer than the retries of a throttled heartbeat (a takeover race is another test)
    assert bench.drain_until_quiet(env={"FINISHER_VISIBILITY_TIMEOUT": "3"}, faults=faults) == 0
    report = injected(bench.fault_report)
    assert report.count("s3.GetObject SlowDown") == 3 and report.count("sqs.DeleteMessage ServiceUnavailable") == 5
    assert bench.problems([work]) == [] and sync_count(bench, RID) == 1


# --- restore states -------------------------------------------------------------------------------------------------
def test_restore_still_in_progress_waits_then_syncs(bench: Bench) -> None:
    work = bench.stage(spec(RID))
    assert bench.drain_until_quiet(faults=[{"kind": "restore_ongoing", "times": 1}]) == 0
    assert injected(bench.fault_report) == ["s3.HeadObject restore_ongoing"]
    assert bench.problems([work]) == []
    waits = [e for e in bench.status()[RID]["history"] if e["event"] in ("retry", "restore_wait")]
    assert [(e["event"], e["cause"]) for e in waits] == [("restore_wait", "restore_in_progress")]


def test_expired_restore_is_requested_again_then_synced(bench: Bench) -> None:
    work = bench.stage(spec(RID), restore=False)
    assert bench.drain_until_quiet() == 0
    assert bench.problems([work]) == []
    history = bench.status()[RID]["history"]
    assert [e["cause"] for e in history if e["event"] in ("retry", "restore_wait")] == ["restore_expired"]
    assert [e["outcome"] for e in history if e["event"] == "restore_reissued"] == ["requested"]


def test_restore_already_in_progress_when_re_requested_is_waited_for(bench: Bench) -> None:
    work = bench.stage(spec(RID), restore=False)
    faults = [_error("s3", "RestoreObject", 1, 409, "RestoreAlreadyInProgress")]
    assert bench.drain_until_quiet(faults=faults) == 0
    assert bench.problems([work]) == []
    history = bench.status()[RID]["history"]
    assert [e["outcome"] for e in history if e["event"] == "restore_reissued"] == ["already_in_progress",
                                                                                   "requested"]


# --- backlog --------------------------------------------------------------------------------------------------------
def test_backlog_deeper_than_the_slots_is_never_sent_to_the_dlq_unprocessed(bench: Bench) -> None:
    works = [bench.stage(spec(f"W1BACKLOG{n:02d}", images=1, image_bytes=4096)) for n in range(14)]
    assert bench.drain_until_quiet(env={"FINISHER_CONCURRENCY": "1"}) == 0
    assert bench.problems(works) == []


@pytest.mark.parametrize("when", ["before_download", "during_extract"])
def test_disk_full_is_retried_later_never_failed(bench: Bench, small_disk: Path, when: str) -> None:
    """Before the download: the works' staging folder (where the payload is written) on a 2 MiB filesystem, the
    work's payload alone needs ≈2.4 MiB (the one fetch path stages the payload, never the zip beside it), refused
    up front. During the extract: the de-bag's writes
    hit ENOSPC (the disk filled up by something else meanwhile)."""
    bench.stage(spec(RID, images=12 if when == "before_download" else 3, image_bytes=200 * 1024))
    env = {"FINISHER_BACKOFF_BASE": "600", "FINISHER_BACKOFF_MAX": "600", "FINISHER_DRAIN_IDLE_LIMIT": "2"}
    faults: list[dict[str, Any]] = []
    if when == "before_download" and small_disk.is_mount():
        env["FINISHER_ARCHIVE_STAGING_DIR"] = str(small_disk)
    else:
        faults.append({"kind": "write_limit", "bytes": 256 * 1024})
    assert bench.drain_until_quiet(env=env, faults=faults) == 0
    row = bench.status()[RID]
    assert row["last_cause"] == "disk_full" and row["phase"] != "failed"
    assert bench.queued() == 1 and bench.dlq_messages() == []  # hidden for the backoff, then tried again
    assert not (bench.paths.archive_root / archive_relpath_for_rid(RID)).exists()
