"""``python -m harness`` (``make demo``) end to end: moto server (loopback) → bags staged as DEEP_ARCHIVE → restores
requested with the finisher CLI → "Object Restore Completed" through the EventBridge rule to the real notify_restore
handler → ``finisher run --drain`` as a separate process → archive re-hashed against the bags' manifests, ledger read
with ``finisher status --json``. Then the harness pieces the reliability tests and benchmarks reuse."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from rich.console import Console

from config.loader import load_environment
from harness.bags import SampleSpec, SampleZip, build_sample_zip
from harness.events import restore_completed_event
from harness.moto_env import MOTO_ACCOUNT, NonLoopbackEndpoint, ensure_loopback, local_aws
from harness.pipeline import (
    FinisherPaths,
    finisher_command,
    prepare_out_dir,
    stage_sample,
    wait_restored,
)
from harness.run import DEMO_SPECS, DemoOptions, DemoOutcome, run_demo
from harness.verify import WorkVerification, verify_work_in_archive
from harness.work_status import history_events, status_problems, status_rows
from onprem.finisher.ledger.store import PHASES
from tests.conftest import load_sample_event

DEV = load_environment("dev")


@dataclass
class DemoRun:
    """What ``python -m harness`` (``make demo``) did, printed, and left in its ledger."""

    outcome: DemoOutcome
    output: str
    status_json: str
    samples: list[SampleZip]  # rebuilt from the same specs (seeded): the manifests the archive must match


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    root = tmp_path_factory.mktemp("demo")
    out = root / "out"
    printed = io.StringIO()
    outcome = run_demo(DemoOptions(out_dir=out), Console(file=printed, width=160, soft_wrap=True))
    # the ledger, read by the finisher CLI itself once the demo (and its server) is gone
    status = subprocess.run(finisher_command("status", "--json"), capture_output=True, text=True, timeout=60,
                            env={**os.environ, **FinisherPaths(out).environ(DEV.name)}, check=True)
    samples = [build_sample_zip(root / "expected", spec) for spec in DEMO_SPECS]
    return DemoRun(outcome, printed.getvalue(), status.stdout, samples)


# --- the pipeline, as `make demo` runs it -----------------------------------------------------------------
def test_demo_succeeds_with_every_work_synced_and_verified(demo: DemoRun) -> None:
    assert demo.outcome.problems == (), demo.output
    assert demo.outcome.ok
    assert [v.work_rid for v in demo.outcome.verified] == ["W1NLM4700", "W1FPL2025", "W1FPL2026", "W22084"]


def test_every_restore_event_is_routed_by_the_real_handler_to_its_regions_queue(demo: DemoRun) -> None:
    assert demo.output.count("routed to bdrc-restore-dev-ap-northeast-2-works") == 3
    assert demo.output.count("routed to bdrc-restore-dev-us-east-1-works") == 1


def test_drain_leaves_every_queue_and_dlq_empty(demo: DemoRun) -> None:
    assert "queues after the drain: all empty" in demo.output


def test_archive_copies_match_the_bags_manifests(demo: DemoRun) -> None:
    archive_root = FinisherPaths(demo.outcome.out_dir).archive_root
    results = [verify_work_in_archive(archive_root, work) for sample in demo.samples for work in sample.works]
    assert [problem for result in results for problem in result.problems] == []
    assert [r.files_checked for r in results] == [w.files for s in demo.samples for w in s.works]


def test_two_works_of_one_bucket_land_under_their_own_rids(demo: DemoRun) -> None:
    archive_root = FinisherPaths(demo.outcome.out_dir).archive_root
    assert (archive_root / "Archive1" / "25" / "W1FPL2025").is_dir()
    assert (archive_root / "Archive1" / "26" / "W1FPL2026").is_dir()


def test_ledger_shows_every_phase_and_every_bag_synced(demo: DemoRun) -> None:
    expected = {sample.key_rid: [w.work_rid for w in sample.works] for sample in demo.samples}
    assert status_problems(demo.status_json, expected) == []


def test_ledger_history_holds_the_phases_in_order(demo: DemoRun) -> None:
    rows = status_rows(demo.status_json)
    assert len(rows) == len(DEMO_SPECS)
    for row in rows:
        assert [e for e in history_events(row) if e in PHASES] == list(PHASES), row["work_rid"]


def test_demo_prints_the_status_table_the_archive_tree_and_a_summary(demo: DemoRun) -> None:
    assert "┃ work      ┃ phase  ┃" in demo.output
    assert "W1NLM4700-I14700001/ (3 files" in demo.output
    assert "✓ 4/4 works synced and verified" in demo.output
    assert str(demo.outcome.out_dir) in demo.output.splitlines()[-1]


def test_demo_outcome_is_ok_only_when_every_work_is_synced_and_verified(tmp_path: Path) -> None:
    good = WorkVerification("W1NLM4700", tmp_path, 6, 1024, ())
    bad = WorkVerification("W22084", tmp_path, 0, 0, ("W22084: not in the archive",))
    assert DemoOutcome(tmp_path, 1, (good,), (), 1.0).ok
    assert not DemoOutcome(tmp_path, 2, (good, bad), (), 1.0).ok
    assert not DemoOutcome(tmp_path, 1, (good,), ("1 message(s) left in a queue",), 1.0).ok
    assert not DemoOutcome(tmp_path, 0, (), (), 1.0).ok


def test_a_demo_directory_can_be_reused(tmp_path: Path) -> None:
    paths = prepare_out_dir(tmp_path / "out")
    (paths.archive_root / "Archive0").mkdir(parents=True)
    prepare_out_dir(tmp_path / "out")
    assert not paths.archive_root.exists()


# --- the harness -----------------------------------------------------------------------------------------
def _key_shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _key_shape(v) for k, v in value.items()}
    return type(value).__name__


def test_restore_event_has_the_shape_of_the_sample_and_the_objects_real_values(tmp_path: Path) -> None:
    with local_aws(DEV) as aws:
        staged = stage_sample(aws, build_sample_zip(tmp_path, SampleSpec("NLM", ("W1NLM4700",), image_groups=1)))
        s3 = aws.client("s3", staged.region)
        s3.restore_object(Bucket=staged.bucket, Key=staged.key, VersionId=staged.version_id,
                          RestoreRequest={"Days": 5, "GlacierJobParameters": {"Tier": "Bulk"}})
        head = wait_restored(aws, staged)
        event = restore_completed_event(bucket=staged.bucket, key=staged.key, region=staged.region, head=head,
                                        account=MOTO_ACCOUNT)
    assert _key_shape(event) == _key_shape(load_sample_event("object-restore-completed.json"))
    assert event["detail"]["object"] == {"key": "Archive0/00/W1NLM4700/W1NLM4700.bag.zip",
                                         "size": staged.sample.size, "etag": head["ETag"].strip('"'),
                                         "version-id": staged.version_id}
    assert event["detail"]["source-storage-class"] == "DEEP_ARCHIVE"


def test_local_aws_creates_the_environments_queues_tables_and_versioned_buckets() -> None:
    with local_aws(DEV) as aws:
        for region in DEV.regions:
            sqs = aws.client("sqs", region.region)
            attrs = sqs.get_queue_attributes(QueueUrl=aws.queue_url(region.region), AttributeNames=["All"])
            redrive = json.loads(attrs["Attributes"]["RedrivePolicy"])
            assert redrive["maxReceiveCount"] == DEV.queues.max_receive_count
            assert redrive["deadLetterTargetArn"].endswith(f":{region.dlq_name}")
            assert aws.failure_queue_url(region.region)
            table = aws.client("dynamodb", region.region).describe_table(
                TableName=DEV.idempotency_table_name(region.region))["Table"]
            assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
            for bucket in region.buckets:
                versioning = aws.client("s3", region.region).get_bucket_versioning(Bucket=bucket.name)
                assert versioning["Status"] == "Enabled"


def test_local_aws_points_every_client_at_loopback_and_restores_the_environment() -> None:
    before = dict(os.environ)
    with local_aws(DEV, provision=False) as aws:
        assert ensure_loopback(boto3.client("sqs", region_name="us-east-1").meta.endpoint_url, "sqs")
        assert aws.subprocess_env()["AWS_ENDPOINT_URL"] == aws.endpoint_url
    assert dict(os.environ) == before


def test_local_aws_can_run_the_server_as_a_child_process() -> None:
    with local_aws(DEV, in_process=False) as aws:
        assert aws.queue_url("us-east-1").startswith(aws.endpoint_url)
        url = aws.endpoint_url
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2)


def test_subprocesses_inherit_no_finisher_setting_of_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINISHER_LEDGER_URL", "postgresql://finisher@db.example.org/ledger")
    monkeypatch.setenv("FINISHER_SETTINGS_FILE", "/etc/finisher/settings.yaml")
    with local_aws(DEV, provision=False) as aws:
        env = aws.subprocess_env(FINISHER_STATE_DIR="/tmp/state")
    assert {k: v for k, v in env.items() if k.startswith("FINISHER_")} == {"FINISHER_STATE_DIR": "/tmp/state"}


def test_local_aws_refuses_an_endpoint_variable_pointing_at_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.ap-northeast-2.amazonaws.com")
    with pytest.raises(NonLoopbackEndpoint, match="AWS_ENDPOINT_URL_S3"), local_aws(DEV):
        pytest.fail("local_aws started despite a real AWS endpoint")


def test_local_aws_refuses_a_non_loopback_server() -> None:
    with pytest.raises(NonLoopbackEndpoint, match="not a loopback address"), \
            local_aws(DEV, endpoint_url="https://sqs.us-east-1.amazonaws.com"):
        pytest.fail("local_aws attached to a non-loopback endpoint")


def test_demo_refuses_a_non_loopback_endpoint(tmp_path: Path) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": "https://s3.us-east-1.amazonaws.com"}
    result = subprocess.run([sys.executable, "-m", "harness", "--out", str(tmp_path / "out")],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a loopback address" in result.stdout
    assert not (tmp_path / "out" / "archive").exists()


def test_demo_refuses_an_out_dir_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        run_demo(DemoOptions(out_dir=tmp_path))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_sample_zip_is_accepted_by_the_legacy_bdrc_bag_tool(tmp_path: Path) -> None:
    from bag.bag_ops import debag

    sample = build_sample_zip(tmp_path / "src", SampleSpec("FPL", ("W1FPL2025", "W1FPL2026"), image_groups=1))
    out = tmp_path / "debagged"
    out.mkdir()
    extracted = debag(str(sample.path), str(out))
    assert sorted(Path(p).name for p in extracted) == ["W1FPL2025", "W1FPL2026"]
    for work in sample.works:
        assert sorted(str(p.relative_to(out / work.work_rid)) for p in (out / work.work_rid).rglob("*")
                      if p.is_file()) == sorted(work.payload_sha512)
