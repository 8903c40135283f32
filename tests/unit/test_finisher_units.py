"""Pure pieces of the finisher: backlog order, backoff, restore estimates, settings, metrics, logs."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.loader import load_environment
from contract import RestoredWork, staging_key_for_rid
from onprem.finisher.errors import NameTooLong, UndecodableText
from onprem.finisher.fetch.restore import DEFAULT_PRICES, estimate, locate
from onprem.finisher.ledger.store import Ledger, Phase
from onprem.finisher.logs import configure_logging, current_work_rid, reset_logging
from onprem.finisher.metrics import LogMetrics, NullMetrics
from onprem.finisher.progress import CountingProgress
from onprem.finisher.queue.backlog import order_by_restore_expiry, order_for_slots, split_for_slots
from onprem.finisher.work.cancel import CancelToken, CheckingProgress, TokenRegistry, WorkInterrupted
from onprem.finisher.work.failures import named_failure
from onprem.finisher.work.history import backoff_seconds
from onprem.finisher.work.operator import status_document
from onprem.finisher.work.settings import load_settings
from onprem.finisher.work.stages import OLD_ENTRY_NOTE, Fetched
from onprem.finisher.work.sweep import sweep_orphans

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def body(rid: str, expiry: datetime | None) -> str:
    return RestoredWork.build(collection="NLM", bucket="b-staging", key=f"Archive0/00/{rid}/{rid}.bag.zip",
                              region="us-east-1", size=1, etag="e", event_time=NOW, source_event_id="x",
                              restore_expiry=expiry).to_body()


@dataclass(frozen=True)
class Msg:
    body: str
    sent_at: datetime | None = None
    receive_count: int = 1


def test_backlog_orders_by_restore_expiry_unknown_last_invalid_first() -> None:
    messages = [Msg(body("W1", NOW + timedelta(days=3))), Msg(body("W2", None)), Msg("garbage"),
                Msg(body("W3", NOW + timedelta(days=1)))]
    ordered = order_by_restore_expiry(messages, lambda m: m.body)
    assert [m.body for m in ordered] == [messages[2].body, messages[3].body, messages[0].body, messages[1].body]


def test_messages_near_the_redrive_limit_go_first() -> None:
    soon, risky = Msg(body("W1", NOW + timedelta(days=1))), Msg(body("W2", NOW + timedelta(days=9)), receive_count=4)
    assert order_for_slots([soon, risky], max_receive_count=5) == [risky, soon]


def test_split_for_slots_takes_what_slots_allow() -> None:
    assert split_for_slots([1, 2, 3], 2) == ([1, 2], [3])
    assert split_for_slots([1, 2], 0) == ([], [1, 2])


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff_seconds(n, 30, 200) for n in (1, 2, 3, 4, 5)] == [30, 60, 120, 200, 200]


def test_estimate_uses_the_price_table() -> None:
    bulk = estimate([100 * 10**9, 100 * 10**9], "Bulk", DEFAULT_PRICES)
    assert (bulk.objects, bulk.eta_hours) == (2, 48) and bulk.cost_usd == pytest.approx(0.5 + 0.00005)
    standard = estimate([10**9], "Standard", DEFAULT_PRICES)
    assert standard.cost_usd == pytest.approx(0.02 + 0.0001) and "indicative" in standard.describe()


def test_locate_tries_the_staging_keys_of_every_bucket_of_the_collection() -> None:
    env = load_environment("dev")
    asked: list[tuple[str, str]] = []

    def head(region: str, bucket: str, key: str) -> dict | None:
        asked.append((bucket, key))
        return {"ContentLength": 7, "StorageClass": "DEEP_ARCHIVE"} if key.endswith(".zip") and \
            not key.endswith(".bag.zip") and "fpl" in bucket else None

    location = locate("W1FPL2251", env, head, collection=None)
    assert location is not None and (location.bucket, location.key, location.collection) == (
        "glacier.staging.fpl.dev.bdrc.org", "Archive1/51/W1FPL2251/W1FPL2251.zip", "FPL")
    assert locate("W1X", env, lambda *_: None, collection="NLM") is None


def test_settings_precedence_env_file_then_env_vars_then_flags(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file = tmp_path / "finisher.yml"
    settings_file.write_text("concurrency: 5\ngrace_period: 7\nstaging_dir: /srv/staging\n")
    monkeypatch.setenv("FINISHER_GRACE_PERIOD", "9")
    monkeypatch.delenv("FINISHER_CONCURRENCY", raising=False)
    monkeypatch.delenv("FINISHER_LEDGER_URL", raising=False)
    monkeypatch.delenv("FINISHER_STATE_DIR", raising=False)
    settings = load_settings(env_name="dev", settings_file=settings_file, wait_time_seconds=1)
    worker = settings.worker
    assert (worker.concurrency, worker.grace_period, worker.wait_time_seconds) == (5, 9.0, 1)
    assert settings.staging_dir == Path("/srv/staging") and worker.visibility_timeout == 900
    assert settings.ledger_url == "sqlite:///.state/dev/state/ledger.sqlite"
    assert settings.restore.tier == "Bulk" and settings.restore.days == 5
    assert settings.fetch.part_size == 64 * 2**20
    assert settings.sync.archive_root == Path(".state/dev/archive")
    assert load_settings(env_name="dev", settings_file=settings_file, concurrency=3).worker.concurrency == 3


def test_metrics_sinks() -> None:
    sink = LogMetrics()
    sink.bytes_downloaded(10)
    sink.work_failed("bag_invalid")
    sink.phase_duration("download", 1.5)
    assert sink.total("BytesDownloaded") == 10 and sink.total("WorkFailures", cause="bag_invalid") == 1
    NullMetrics().work_synced()


def test_json_logs_carry_the_work_rid() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    try:
        logging.getLogger("onprem.test").info("W1: hello", extra={"work_rid": "W1", "size": 3})
        token = current_work_rid.set("W2")
        logging.getLogger("bagit").info("library line")
        current_work_rid.reset(token)
    finally:
        reset_logging()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["work_rid"], first["size"], first["message"]) == ("W1", 3, "W1: hello")
    assert second["work_rid"] == "W2"


def test_text_logs_on_request() -> None:
    stream = io.StringIO()
    configure_logging("text", "INFO", stream)
    try:
        logging.getLogger("onprem.test").info("plain")
    finally:
        reset_logging()
    assert "plain" in stream.getvalue() and not stream.getvalue().startswith("{")


def test_cancel_token_stops_a_stage_at_its_next_unit() -> None:
    token = CancelToken("W1")
    progress = CheckingProgress(CountingProgress(), token)
    progress.advance(5)
    registry = TokenRegistry()
    registry.add(token)
    assert registry.cancel_all("shutdown") == 1
    with pytest.raises(WorkInterrupted, match="shutdown"):
        progress.advance(5)
    token.cancel("handoff")  # the first reason wins
    assert token.reason == "shutdown"


def test_cloudwatch_metrics_land_in_the_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    from onprem.finisher.metrics_batch import BatchedMetrics

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        sink = BatchedMetrics(client, "BDRC/Restore/test")
        sink.work_failed("bag_invalid")
        sink.phase_duration("sync", 2.0)
        sink.close()  # never started: the last send runs here
        metrics = client.list_metrics(Namespace="BDRC/Restore/test")["Metrics"]
    names = {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in metrics}
    assert names == {("WorkFailures", (("cause", "bag_invalid"),)), ("PhaseDuration", (("phase", "sync"),))}


class FakeQueue:
    """Records what the look-ahead asks of SQS."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def set_visibility(self, message: object, seconds: int) -> None:
        self.calls.append(("visibility", message.message_id, seconds))  # type: ignore[attr-defined]

    def release(self, message: object) -> bool:
        self.calls.append(("release", message.message_id, 0))  # type: ignore[attr-defined]
        return True


def test_lookahead_holds_surplus_invisible_and_releases_it_only_at_shutdown() -> None:
    from onprem.finisher.queue.lookahead import Lookahead
    from onprem.finisher.queue.sqs import ReceivedMessage

    clock = [0.0]
    queue = FakeQueue()
    ahead = Lookahead(capacity=2, visibility_s=30, fraction=1 / 3, max_visibility_s=43200, handoff_margin_s=1800,
                      max_receive_count=5, clock=lambda: clock[0])
    messages = [ReceivedMessage("us-east-1", f"m{n}", f"h{n}", body(f"W{n}", NOW + timedelta(days=9 - n)), 1,
                                None, None, received_monotonic=0.0) for n in range(4)]
    taken = ahead.choose([(queue, m) for m in messages], free=1)  # type: ignore[misc]
    assert [t.message.message_id for t in taken] == ["m3"] and len(ahead) == 2
    assert queue.calls == [("release", "m0", 0)]  # beyond the capacity: the latest expiry goes back
    clock[0] = 11.0
    ahead.keep_invisible()
    assert sorted(queue.calls[1:]) == [("visibility", "m1", 30), ("visibility", "m2", 30)]
    assert [t.message.message_id for t in ahead.choose([], free=1)] == ["m2"]
    ahead.release_all()
    assert queue.calls[-1] == ("release", "m1", 0) and len(ahead) == 0


def test_a_real_enametoolong_is_named_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / ("n" * 300)
    with pytest.raises(OSError) as caught:
        path.write_bytes(b"")
    named = named_failure(caught.value, "W1NLM4700")
    assert isinstance(named, NameTooLong) and named.cause == "name_too_long"
    assert str(named).startswith(f"W1NLM4700: {path}: a file name over 255 bytes")


def test_a_real_decode_error_is_named_with_the_file_being_read(tmp_path: Path) -> None:
    tag_path = tmp_path / "bag-info.txt"
    tag_path.write_bytes(b"Source-Organization: caf\xe9\n")
    with pytest.raises(UnicodeDecodeError) as caught:
        tag_path.read_text(encoding="utf-8")
    named = named_failure(caught.value, "W1NLM4700")
    assert isinstance(named, UndecodableText) and named.cause == "undecodable_text"
    assert str(named) == (f"W1NLM4700: {tag_path}: bytes b'\\xe9' at offset 24 do not decode as utf-8: "
                          "not de-bagged")


def test_other_exceptions_are_not_named() -> None:
    assert named_failure(KeyError("x"), "W1NLM4700") is None
    assert named_failure(OSError(errno.EIO, "I/O error"), "W1NLM4700") is None


def test_the_sweep_looks_into_staging_slots_only_and_removes_empty_ones(tmp_path: Path) -> None:
    slot = tmp_path / "downloads" / "0123456789abcdef"  # an older finisher's download slot: nothing makes one now
    staged = tmp_path / "works" / "W1NLM4700" / "images"  # not a slot: a staged work's files are never looked at
    empty = tmp_path / "works" / "fedcba9876543210"
    for folder in (slot, staged, empty):
        folder.mkdir(parents=True)
    (slot / "W1NLM4700.bag.zip.part").write_bytes(b"x")  # an older finisher's whole-zip download: an orphan
    (staged / "scan.part").write_bytes(b"a payload file")
    removed = sweep_orphans(tmp_path, grace_seconds=0, now=lambda: 4e9)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "downloads", "downloads/0123456789abcdef", "downloads/0123456789abcdef/W1NLM4700.bag.zip.part",
        "works/fedcba9876543210"]
    assert (staged / "scan.part").is_file() and (tmp_path / "works").is_dir()


def test_the_sweep_empties_an_older_finishers_downloads_in_one_start_past_the_grace(tmp_path: Path) -> None:
    # the .part files go first: the slot and downloads/ they leave are judged by their age before the sweep
    slot = tmp_path / "downloads" / "0123456789abcdef"
    slot.mkdir(parents=True)
    (slot / "W1NLM4700.bag.zip.part").write_bytes(b"x")
    (slot / "W1NLM4700.bag.zip.part.json").write_text("{}")
    two_hours_ago = time.time() - 2 * 3600
    for path in (slot / "W1NLM4700.bag.zip.part", slot / "W1NLM4700.bag.zip.part.json", slot, slot.parent):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert len(sweep_orphans(tmp_path)) == 4
    assert list(tmp_path.iterdir()) == []
    young = tmp_path / "downloads" / "fedcba9876543210"  # within the grace: perhaps another finisher's, kept
    young.mkdir(parents=True)
    assert sweep_orphans(tmp_path) == [] and young.is_dir()


def test_the_finisher_makes_its_own_folders_but_never_the_archive_root(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # an unmounted archive is a missing folder: creating it would fill the local disk under the mount point
    monkeypatch.setenv("FINISHER_ARCHIVE_ROOT", str(tmp_path / "mnt" / "archive"))
    monkeypatch.setenv("FINISHER_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("FINISHER_STATE_DIR", str(tmp_path / "state"))
    settings = load_settings(env_name="dev")
    settings.ensure_dirs()
    assert settings.staging_dir.is_dir() and settings.state_dir.is_dir()
    assert not (settings.staging_dir / "downloads").exists()  # the zip is never on disk: no downloads folder
    assert not (tmp_path / "mnt").exists()  # nor the works folder, hidden under the archive root
    (tmp_path / "mnt" / "archive").mkdir(parents=True)  # mounted
    settings.ensure_dirs()
    assert settings.works_dir == tmp_path / "mnt" / "archive" / ".bdrc-staging" / "works"
    assert settings.works_dir.is_dir()


def test_status_reads_what_was_fetched_from_this_and_an_older_finishers_downloaded_entry(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    works = [RestoredWork.build(collection="NLM", bucket="glacier.staging.nlm.dev.bdrc.org",
                                key=staging_key_for_rid(rid), region="ap-northeast-2", size=10, etag="abc",
                                event_time=datetime(2026, 11, 29, tzinfo=UTC), source_event_id=rid)
             for rid in ("W1NLM4700", "W1NLM4701")]
    for work in works:
        ledger.register(work, work.to_body(), message_id=work.work_rid)
    old, new = works
    # what the finisher before the one fetch path wrote: a zip path in downloads/ (never there now), parts resumed
    ledger.advance(old.idempotency_key, Phase.DOWNLOADED, path="/staging/downloads/0123456789abcdef/W1NLM4700.bag.zip",
                   size=10, resumed_parts=2)
    fetched = Fetched(new.key, 10, 1, "crc64nvme", "crc64nvme full-object checksum")
    ledger.advance(new.idempotency_key, Phase.DOWNLOADED, **fetched.to_detail())
    shown = {row["work_rid"]: row["fetched"] for row in status_document(ledger, [], None)["works"]}
    assert shown["W1NLM4700"] == {"object": "W1NLM4700.bag.zip", "size": 10, "segments_resumed": 2,
                                  "checksum_verified": None, "checksum_note": OLD_ENTRY_NOTE}
    assert shown["W1NLM4701"] == fetched.to_detail() and Fetched.from_detail(shown["W1NLM4701"]) == fetched
    assert not any("path" in entry for entry in ledger.get(new.idempotency_key).history)  # type: ignore[union-attr]
