"""The demo's path end to end: moto server (loopback) → bags staged as DEEP_ARCHIVE → restores requested with the
finisher CLI → "Object Restore Completed" through the EventBridge rule to the real notify_restore handler →
``finisher run --drain`` as a separate process → archive re-hashed against the bags' manifests, ledger read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from config.loader import load_environment
from onprem.finisher.demo.events import restore_completed_event
from onprem.finisher.demo.moto_env import MOTO_ACCOUNT, LocalAws, NonLoopbackEndpoint, ensure_loopback, local_aws
from onprem.finisher.demo.pipeline import (
    Delivery,
    FinisherPaths,
    StagedObject,
    deliver_restore_events,
    pending_messages,
    prepare_out_dir,
    run_finisher,
    stage_sample,
    wait_restored,
)
from onprem.finisher.demo.run import DemoOptions, run_demo
from onprem.finisher.demo.sample_bags import DEMO_SPECS, SampleSpec, build_sample_zip
from onprem.finisher.demo.verify import verify_work_in_archive
from onprem.finisher.demo.work_status import request_restore_args, status_problems, status_rows
from tests.conftest import load_sample_event

DEV = load_environment("dev")


@dataclass
class PipelineRun:
    aws: LocalAws
    paths: FinisherPaths
    staged: list[StagedObject]
    deliveries: list[Delivery]
    drain: subprocess.CompletedProcess[str]
    status_json: str

    @property
    def work_rids(self) -> list[str]:
        return [w.work_rid for s in self.staged for w in s.sample.works]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineRun]:
    root = tmp_path_factory.mktemp("demo")
    paths = prepare_out_dir(root / "out")
    with local_aws(DEV, config_dir=root / "aws") as aws:
        staged = [stage_sample(aws, build_sample_zip(root / "bags", spec)) for spec in DEMO_SPECS]
        restore = run_finisher(aws, paths, request_restore_args(DEV, staged), timeout_s=60)
        assert restore.returncode == 0, restore.stdout
        deliveries = deliver_restore_events(aws, staged, root / "lambda")
        drain = run_finisher(aws, paths, ["run", "--drain"], timeout_s=120)
        status = run_finisher(aws, paths, ["status", "--json"], timeout_s=60)
        yield PipelineRun(aws, paths, staged, deliveries, drain, status.stdout)


# --- the pipeline ----------------------------------------------------------------------------------------
def test_every_restore_event_is_routed_by_the_real_handler(pipeline: PipelineRun) -> None:
    assert [d.invocation.error for d in pipeline.deliveries] == [None] * len(pipeline.staged)
    assert {d.staged.work_rid for d in pipeline.deliveries} == {s.work_rid for s in pipeline.staged}


def test_drain_exits_cleanly_and_leaves_no_message(pipeline: PipelineRun) -> None:
    assert pipeline.drain.returncode == 0, pipeline.drain.stdout
    assert pending_messages(pipeline.aws) == dict.fromkeys(pending_messages(pipeline.aws), 0)


def test_archive_copies_match_the_bags_manifests(pipeline: PipelineRun) -> None:
    results = [verify_work_in_archive(pipeline.paths.archive_root, work)
               for staged in pipeline.staged for work in staged.sample.works]
    assert [problem for r in results for problem in r.problems] == []
    assert [r.files_checked for r in results] == [w.files for s in pipeline.staged for w in s.sample.works]


def test_two_bag_zip_lands_as_two_works_under_their_own_rids(pipeline: PipelineRun) -> None:
    archive = pipeline.paths.archive_root
    assert (archive / "Archive1" / "25" / "W1FPL2025").is_dir()
    assert (archive / "Archive1" / "26" / "W1FPL2026").is_dir()


def test_ledger_shows_every_work_synced(pipeline: PipelineRun) -> None:
    assert status_problems(pipeline.status_json, pipeline.work_rids) == []


def test_ledger_records_every_phase_of_every_work(pipeline: PipelineRun) -> None:
    rows = {row["work_rid"]: row for row in status_rows(pipeline.status_json)}
    for rid in pipeline.work_rids:
        phases = _phases(rows[rid])
        assert {"fetched", "debagged", "synced"} <= set(phases), (rid, phases)


def _phases(row: dict[str, Any]) -> list[str]:
    history = row.get("phases") or row.get("history") or []
    return [item if isinstance(item, str) else item.get("phase", "") for item in history]


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
    result = subprocess.run([sys.executable, "-m", "onprem.finisher.demo", "--out", str(tmp_path / "out")],
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
