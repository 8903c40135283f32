"""Every ``finisher`` command through typer's CliRunner on in-process moto, with the real stages."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from contract import archive_relpath_for_rid
from harness.bags import make_bdrc_bag_zip
from onprem.finisher.cli.app import app
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.logs import reset_logging
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.clients import AwsClients
from tests.integration.worker_support import (
    BUCKET,
    DLQ,
    QUEUE,
    REGION,
    aws,
    environment,
    queue_depth,
    queue_messages,
    send,
    stage_object,
)

__all__ = ["aws"]
RID = "W1NLM4700"


@pytest.fixture
def cli(tmp_path: Path, aws: AwsClients, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    env_file = tmp_path / "test-env.yaml"
    env_file.write_text(yaml.safe_dump(environment(tmp_path).model_dump(mode="json")))
    monkeypatch.setenv("BDRC_ENV_FILE", str(env_file))
    for name, value in {"WAIT_TIME_SECONDS": "0", "BACKOFF_BASE": "0", "BACKOFF_MAX": "1", "MIN_FREE_BYTES": "0",
                        "VISIBILITY_TIMEOUT": "30", "DRAIN_IDLE_LIMIT": "3", "LOG_FORMAT": "json"}.items():
        monkeypatch.setenv(f"FINISHER_{name}", value)
    yield CliRunner()
    reset_logging()


def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite'}")


def bag_zip(tmp_path: Path, rid: str = RID) -> Path:
    return make_bdrc_bag_zip(tmp_path / "bags", rids=[rid])


def upload_archived(aws: AwsClients, tmp_path: Path, rid: str = RID) -> None:
    aws.s3(REGION).upload_file(str(bag_zip(tmp_path, rid)), BUCKET, f"Archive0/00/{rid}/{rid}.bag.zip",
                               ExtraArgs={"StorageClass": "DEEP_ARCHIVE"})


def test_request_restore_dry_run_prints_the_estimate_and_requests_nothing(
        tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    upload_archived(aws, tmp_path)
    result = cli.invoke(app, ["request-restore", RID, "--tier", "Standard", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["estimate"]["objects"] == 1 and report["estimate"]["eta_hours"] == 12
    assert report["estimate"]["cost_usd"] > 0 and report["objects"][0]["outcome"] == "dry_run"
    assert "Restore" not in aws.s3(REGION).head_object(Bucket=BUCKET, Key=f"Archive0/00/{RID}/{RID}.bag.zip")
    assert ledger(tmp_path).restore_requests() == []


def test_request_restore_finds_the_bucket_and_records_the_request(
        tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    upload_archived(aws, tmp_path)
    result = cli.invoke(app, ["request-restore", RID, "--days", "4", "--yes"])
    assert result.exit_code == 0, result.output
    assert "estimate: 1 object(s)" in result.stdout and "Bulk" in result.stdout and "requested" in result.stdout
    [request] = ledger(tmp_path).restore_requests()
    assert (request["bucket"], request["tier"], request["days"], request["status"]) == (BUCKET, "Bulk", 4,
                                                                                        "requested")
    status = json.loads(cli.invoke(app, ["status", "--json"]).stdout)
    assert [r["work_rid"] for r in status["pending_restores"]] == [RID]
    again = json.loads(cli.invoke(app, ["request-restore", f"s3://{BUCKET}/Archive0/00/{RID}/{RID}.bag.zip",
                                        "--json", "--yes"]).stdout)
    assert again["objects"][0]["outcome"] in ("already_restored", "already_in_progress")


def test_request_restore_of_an_unknown_work_exits_1(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    rids = tmp_path / "rids.txt"
    rids.write_text("# works\nW9NOPE99\n")
    result = cli.invoke(app, ["request-restore", "--from-file", str(rids), "--collection", "NLM", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["objects"] == [{"work_rid": "W9NOPE99", "outcome": "not_found"}]


def test_run_drain_syncs_a_real_bag_with_the_real_stages(tmp_path: Path, aws: AwsClients, cli: CliRunner,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINISHER_FETCH_PART_SIZE", "8192")  # several segments in flight
    work = stage_object(aws, make_bdrc_bag_zip(tmp_path / "bags", rids=[RID], file_size=20000), RID)
    send(aws, work)
    result = cli.invoke(app, ["run", "--drain"])
    assert result.exit_code == 0, result.output
    archived = tmp_path / "archive" / archive_relpath_for_rid(RID)
    assert (archived / "data").is_dir() or any(archived.rglob("*.tif"))
    assert queue_depth(aws) == {"visible": 0, "in_flight": 0}
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    about_work = [e for e in events if RID in e["message"] and e["logger"].startswith("onprem.")]
    assert about_work and all(e.get("work_rid") == RID for e in about_work), about_work
    status = json.loads(cli.invoke(app, ["status", RID, "--json"]).stdout)
    [row] = status["works"]
    assert row["phase"] == "synced" and row["synced_at"] and row["downloaded_at"] and row["debagged_at"]
    assert row["idempotency_key"] == work.idempotency_key
    assert not list((tmp_path / "staging").rglob("*.bag.zip*"))  # the zip is never written
    # the ledger says what was read, not a file: no path that does not exist, the checksum S3 gave verified
    [downloaded] = [e for e in row["history"] if e["event"] == "downloaded"]
    assert not [v for v in downloaded.values() if isinstance(v, str) and v.startswith("/") and not Path(v).exists()]
    assert (downloaded["object"], downloaded["size"]) == (work.key, work.size)
    assert downloaded["checksum_verified"] in ("crc32", "crc32c", "crc64nvme"), downloaded  # as the upload made it
    assert row["fetched"] == {"object": work.key, "size": work.size, "segments_resumed": 0,
                              "checksum_verified": downloaded["checksum_verified"],
                              "checksum_note": downloaded["checksum_note"]}
    table = cli.invoke(app, ["status", "--phase", "synced"])
    assert RID in table.stdout and "synced" in table.stdout


def test_status_expiring_lists_restored_copies_at_risk(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    soon = stage_object(aws, bag_zip(tmp_path, "W1NLM4701"), "W1NLM4701", expiry_days=1)
    later = stage_object(aws, bag_zip(tmp_path, "W1NLM4702"), "W1NLM4702", expiry_days=9)
    book = ledger(tmp_path)
    for work in (soon, later):
        book.register(work, work.to_body())
    result = cli.invoke(app, ["status", "--expiring", "--json"])
    assert [w["work_rid"] for w in json.loads(result.stdout)["works"]] == ["W1NLM4701"]
    assert "W1NLM4701" in cli.invoke(app, ["status", "--expiring"]).stdout


def test_retry_sends_the_stored_body_again(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    work = stage_object(aws, bag_zip(tmp_path), RID)
    book = ledger(tmp_path)
    book.register(work, work.to_body())
    book.fail(work.idempotency_key, "bag_invalid", f"{RID}: bad", permanent=True)
    result = cli.invoke(app, ["retry", RID])
    assert result.exit_code == 0, result.output
    [message] = queue_messages(aws, QUEUE)
    assert message["Body"] == work.to_body()
    assert book.get(work.idempotency_key).phase == "received"  # type: ignore[union-attr]
    assert cli.invoke(app, ["retry", "W9UNKNOWN"]).exit_code == 1


def test_redrive_moves_dlq_messages_back(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    queue = WorkQueue(aws.client("sqs", REGION), REGION, QUEUE, DLQ)
    send(aws, "body-1", DLQ)
    send(aws, "body-2", DLQ)
    result = cli.invoke(app, ["redrive", "--region", REGION])
    assert result.exit_code == 0, result.output
    assert "2 message(s) moved" in result.stdout
    assert sorted(m["Body"] for m in queue_messages(aws, QUEUE)) == ["body-1", "body-2"]
    assert queue.depth()["dlq"] == 0
    assert cli.invoke(app, ["redrive", "--region", "eu-west-3"]).exit_code == 2


def test_ingest_debags_and_syncs_a_local_zip(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    zip_path = bag_zip(tmp_path)
    result = cli.invoke(app, ["ingest", str(zip_path)])
    assert result.exit_code == 0, result.output
    assert f"synced {RID}" in result.stdout
    assert (tmp_path / "archive" / archive_relpath_for_rid(RID)).is_dir()
    [row] = ledger(tmp_path).works([RID])
    assert (row.source, row.phase) == ("ingest", "synced")
    assert zip_path.is_file()  # the operator's file is never removed
    broken = tmp_path / "W1NLM4709.zip"
    broken.write_bytes(b"not a zip")
    assert cli.invoke(app, ["ingest", str(broken)]).exit_code == 1
    failed = ledger(tmp_path).works(["W1NLM4709"])
    assert failed[0].phase == "failed" and failed[0].last_cause == "corrupt_zip"


def test_settings_errors_exit_2(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BDRC_ENV_FILE", str(tmp_path / "missing.yaml"))
    assert cli.invoke(app, ["status"]).exit_code == 2


def test_expiry_horizon_is_reported(cli: CliRunner) -> None:
    document = json.loads(cli.invoke(app, ["status", "--expiring", "--json"]).stdout)
    horizon = datetime.fromisoformat(document["horizon"])
    assert horizon > datetime.now(UTC) + timedelta(hours=47)


def test_ingest_reports_names_with_brackets_as_they_are_records_each_refusal_and_goes_on(
    tmp_path: Path, cli: CliRunner,
) -> None:
    folders = ["drafts[/draft]", "[b]bold", "plain"]
    zips = []
    for n, folder in enumerate(folders):
        path = tmp_path / folder / f"W1NLM47{n:02d}.zip"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not a zip")
        zips.append(path)
    result = cli.invoke(app, ["ingest", *map(str, zips)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for path in zips:  # every zip reported, on one line, with the name exactly as it is
        [line] = [line for line in result.output.splitlines() if line.startswith(f"{path}: ")]
        assert line.endswith("(corrupt_zip)")
    rows = ledger(tmp_path).works([f"W1NLM47{n:02d}" for n in range(3)])
    assert [(r.phase, r.last_cause) for r in rows] == [("failed", "corrupt_zip")] * 3


def test_a_ledger_that_is_not_a_database_is_one_line_and_exit_3(tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / "state" / "ledger.sqlite"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage" * 1024)
    result = cli.invoke(app, ["status"])
    assert result.exit_code == 3
    assert result.output.strip() == f"ledger {path}: file is not a database"


def test_a_locked_ledger_stops_ingest_within_the_lock_timeout_as_one_line(
    tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "state" / "ledger.sqlite"
    ledger(tmp_path).close()
    monkeypatch.setenv("FINISHER_LEDGER_LOCK_TIMEOUT", "0.5")
    broken = tmp_path / "W1NLM4709.zip"
    broken.write_bytes(b"not a zip")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result = cli.invoke(app, ["ingest", str(broken), str(broken)])
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 3
    assert result.output.strip() == f"ledger {path}: locked by another process for 0.5 s (database is locked)"
    assert waited < 5


def test_ingest_takes_a_zip_of_several_works_only_when_the_operator_names_each(
    tmp_path: Path, cli: CliRunner,
) -> None:
    rids = ["W1NLM4721", "W1NLM4722"]
    zip_path = make_bdrc_bag_zip(tmp_path / "bags", rids=rids)
    refused = cli.invoke(app, ["ingest", str(zip_path)])  # the file name names one work; the zip holds two
    assert refused.exit_code == 1, refused.output
    assert "(unexpected_work)" in refused.output
    assert not (tmp_path / "archive" / archive_relpath_for_rid(rids[1])).exists()
    one_short = cli.invoke(app, ["ingest", "--work", rids[0], str(zip_path)])
    assert one_short.exit_code == 1 and "(unexpected_work)" in one_short.output
    taken = cli.invoke(app, ["ingest", "--work", rids[0], "--work", rids[1], str(zip_path)])
    assert taken.exit_code == 0, taken.output
    assert f"synced {', '.join(rids)}" in taken.stdout
    for rid in rids:
        assert (tmp_path / "archive" / archive_relpath_for_rid(rid)).is_dir()
    assert cli.invoke(app, ["ingest", "--work", "W1\n", str(zip_path)]).exit_code == 2


def test_a_drain_that_cannot_read_its_queue_exits_4_naming_it(tmp_path: Path, cli: CliRunner,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINISHER_DRAIN_IDLE_LIMIT", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there: every receive fails
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = cli.invoke(app, ["run", "--drain"])
    assert result.exit_code == 4, result.output
