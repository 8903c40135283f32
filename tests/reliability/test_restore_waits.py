"""Waiting is not failing, and a re-restore is a new restore: the finisher as a process on a moto server, the real
notify_restore handler, time scaled by ``FINISHER_RESTORE_WAIT_INTERVAL``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract import parse_message
from harness.events import restore_completed_event
from harness.lambda_runtime import invoke_notify_restore
from harness.moto_env import MOTO_ACCOUNT
from tests.reliability.faults import wait_for
from tests.reliability.harness import DEV, Bench, spec, sync_count, trial_bench
from tests.reliability.inject_boot import injected

RID = "W1NLM4700"
#: seconds between two restore checks in these trials (an hour in production)
INTERVAL_S = 1


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with trial_bench(tmp_path) as made:
        yield made


def _history(bench: Bench, rid: str = RID) -> list[dict[str, Any]]:
    return list(bench.status()[rid]["history"])


def test_restore_in_progress_past_max_receive_count_waits_then_syncs_once(bench: Bench) -> None:
    limit = DEV.queues.max_receive_count
    work = bench.stage(spec(RID))
    checks = limit + 2  # more restore checks than receives SQS allows one message
    faults = [{"kind": "restore_ongoing", "times": checks}]
    assert bench.drain_until_quiet(env={"FINISHER_RESTORE_WAIT_INTERVAL": str(INTERVAL_S)}, faults=faults) == 0
    assert injected(bench.fault_report).count("s3.HeadObject restore_ongoing") == checks
    assert bench.problems([work]) == []  # synced, queues and DLQ empty, one 'synced' in the history
    assert sync_count(bench, RID) == 1
    history = _history(bench)
    waits = [e for e in history if e["event"] == "restore_wait"]
    assert [(e["cause"], e["waits"]) for e in waits] == [("restore_in_progress", n) for n in range(1, checks + 1)]
    assert len({e["waiting_since"] for e in waits}) == 1  # the wait counts from the first check
    assert not [e for e in history if e["event"] in ("retry", "failed")]
    assert bench.status()[RID]["attempts"] == 0


def test_a_restore_never_ready_fails_as_restore_wait_exceeded_with_its_cause(bench: Bench) -> None:
    bench.stage(spec(RID))
    env = {"FINISHER_RESTORE_WAIT_INTERVAL": str(INTERVAL_S), "FINISHER_RESTORE_MAX_WAIT_HOURS": str(3 / 3600)}
    assert bench.drain_until_quiet(env=env, faults=[{"kind": "restore_ongoing", "times": 1000}]) == 0
    [dead] = bench.dlq_messages()
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert attributes["failure_cause"] == "restore_wait_exceeded"
    assert "still in progress" in attributes["failure_message"] and "waited" in attributes["failure_message"]
    assert parse_message(dead["Body"]).continuation is None  # a redrive waits afresh
    row = bench.status()[RID]
    assert (row["phase"], row["last_cause"]) == ("failed", "restore_wait_exceeded")
    assert sum(e["event"] == "restore_wait" for e in row["history"]) >= 2
    assert not (bench.paths.archive_root / "Archive0").exists()


def _completion(bench: Bench, work: Any, restore_header: str | None = None) -> dict[str, Any]:
    head = dict(bench.aws.client("s3", work.region).head_object(Bucket=work.bucket, Key=work.key,
                                                                 VersionId=work.version_id))
    if restore_header is not None:
        head["Restore"] = restore_header
    return restore_completed_event(bucket=work.bucket, key=work.key, region=work.region, head=head,
                                   account=MOTO_ACCOUNT)


def _notify(bench: Bench, region: str, events: list[dict[str, Any]]) -> list[str]:
    invocations = invoke_notify_restore(bench.aws, region, events, bench.paths.root / "lambda")
    assert all(i.ok for i in invocations), [i.error for i in invocations]
    return [outcome for i in invocations for outcome in i.response["counts"]]


def test_expired_copy_re_requested_its_new_completion_is_delivered_and_synced_once(bench: Bench) -> None:
    work = bench.stage(spec(RID), send=False)
    first = _completion(bench, work)
    assert _notify(bench, work.region, [first, first | {"id": "redelivered-1"}]) == ["routed", "duplicate"]
    # the first check finds the copy expired: re-requested, then waited for
    env = {"FINISHER_RESTORE_WAIT_INTERVAL": "4"}
    finisher = bench.start(["run", "--drain"], env, faults=[{"kind": "restore_expired", "times": 1}])
    try:
        wait_for(lambda: any(e["event"] == "restore_wait" for e in _rows(bench)), 60, "the finisher's first wait")
        # the re-restore completes: same version, a later expiry (S3 counts the new restore's days from now)
        later = _completion(bench, work, 'ongoing-request="false", expiry-date="Sat, 12 Dec 2026 00:00:00 GMT"')
        assert later["detail"]["restore-expiry-time"] != first["detail"]["restore-expiry-time"]
        assert _notify(bench, work.region, [later, later | {"id": "redelivered-2"}]) == ["routed", "duplicate"]
        assert finisher.wait(timeout=120) == 0
    finally:
        if finisher.poll() is None:
            finisher.kill()
            finisher.wait()
    assert bench.problems([work]) == []
    assert sync_count(bench, RID) == 1
    events = [e["event"] for e in _history(bench)]
    assert events.count("restore_reissued") == 1 and events.count("synced") == 1
    assert events.count("duplicate") == 1  # the other of the two messages, deleted unsynced
    wait = next(e for e in _history(bench) if e["event"] == "restore_wait")
    assert wait["cause"] == "restore_expired"


def _rows(bench: Bench) -> list[dict[str, Any]]:
    try:
        rows = bench.ledger_rows()
    except Exception:  # noqa: BLE001 - the finisher may not have created the ledger yet
        return []
    return [event for row in rows if row["work_rid"] == RID for event in row["history"]]
