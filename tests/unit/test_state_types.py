"""States have types (issue 19 item 4): the StrEnums keep the strings the ledger and the JSON always held, the
control-flow signals form one family that is never a failure, and each error class has one cleanup policy."""

from __future__ import annotations

import ast
import inspect
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract import RestoredWork, staging_key_for_rid
from onprem.finisher import errors
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.staging import clean_up, temp_dir_for
from onprem.finisher.errors import Cause, Cleanup, ControlFlow, FinisherError, InterruptReason
from onprem.finisher.ledger.store import Event, Ledger, Phase
from onprem.finisher.work.operator import status_document
from onprem.finisher.work.outcome import Outcome

ROOT = Path(__file__).resolve().parents[2]
RID = "W1NLM4700"


def _work() -> RestoredWork:
    return RestoredWork.build(collection="NLM", bucket="glacier.staging.nlm.dev.bdrc.org",
                              key=staging_key_for_rid(RID), region="ap-northeast-2", size=10, etag="abc",
                              event_time=datetime(2026, 11, 29, tzinfo=UTC), source_event_id="e1")


def test_the_enums_hold_the_strings_stored_and_printed_before() -> None:
    assert [p.value for p in Phase] == ["restore_requested", "received", "restore_completed", "downloaded",
                                        "debagged", "synced", "failed", "superseded"]
    assert [e.value for e in Event] == ["retry", "duplicate", "work_synced", "released", "handed_on",
                                        "restore_reissued", "restore_wait", "requeued", "hook_failed", "hook_ok"]
    assert [o.value for o in Outcome] == ["synced", "duplicate", "superseded", "retry", "hook_retry", "failed",
                                          "rejected", "busy", "released", "handed_on", "waiting", "lease_lost",
                                          "ledger_unavailable", "error"]
    assert [r.value for r in InterruptReason] == ["shutdown", "handoff", "lease_lost"]
    assert [c.value for c in Cause] == ["contract", "lease_lost", "too_many_hops", "unexpected"]
    assert Phase.SYNCED == "synced" and f"{Phase.SYNCED}_at" == "synced_at" and json.dumps(Outcome.BUSY) == '"busy"'


def test_ledger_rows_and_status_json_hold_the_plain_strings(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    work = _work()
    key = work.idempotency_key
    ledger.register(work, work.to_body(), message_id="m1")
    ledger.fail(key, Cause.LEASE_LOST, f"{RID}: lease lost", permanent=False)
    ledger.advance(key, Phase.DOWNLOADED, path="/x.zip", size=10, resumed_parts=0)
    ledger.note(key, Event.WORK_SYNCED, work_rid=RID, archive_path=None)
    ledger.advance(key, Phase.SYNCED, works=[RID])
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        phase, last_cause, history = db.execute("SELECT phase, last_cause, history FROM works").fetchone()
    assert (phase, last_cause) == ("synced", None)
    assert [e["event"] for e in json.loads(history)] == ["received", "retry", "downloaded", "work_synced", "synced"]
    assert json.loads(history)[1]["cause"] == "lease_lost"
    document = json.loads(json.dumps(status_document(ledger, [], None), default=str))
    row = document["works"][0]
    assert row["phase"] == "synced" and row["synced_at"] and row["downloaded_at"] and row["attempts"] == 1
    assert [e["event"] for e in row["history"]] == ["received", "retry", "downloaded", "work_synced", "synced"]
    assert ledger.works(phase=Phase.SYNCED)[0].phase is Phase.SYNCED


def test_the_control_flow_signals_are_one_family_and_never_a_failure() -> None:
    family = {name for name, cls in vars(errors).items()
              if isinstance(cls, type) and issubclass(cls, ControlFlow) and cls is not ControlFlow}
    assert family == {"WorkInterrupted", "WorkSuperseded", "ExtractionCancelled",
                      "ReceiptHandleInvalid"}
    assert not any(issubclass(getattr(errors, name), FinisherError) for name in family)


def test_no_product_module_but_errors_defines_an_exception() -> None:
    defined = []
    for path in sorted((ROOT / "onprem" / "finisher").rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id.endswith(("Exception", "Error")) for b in node.bases):
                defined.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert defined == []


def test_each_error_class_has_one_cleanup_policy() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, FinisherError)]
    policy = {c.__name__: c.cleanup for c in classes}
    assert {n for n, p in policy.items() if p is Cleanup.PURGE} == {"ObjectChanged", "ObjectMissing"}
    assert {n for n, p in policy.items() if p is Cleanup.DISCARD} == {"IntegrityError"}
    assert all(policy[c.__name__] is Cleanup.EVIDENCE for c in classes
               if issubclass(c, errors.PermanentError) and c.__name__ not in ("ObjectChanged", "ObjectMissing"))
    assert all(policy[c.__name__] is Cleanup.RESUME for c in classes
               if not issubclass(c, errors.PermanentError) and c is not errors.IntegrityError)


@pytest.mark.parametrize(("error", "temp_dir_left", "evidence_kept"), [
    (errors.TransferError(RID, "connection reset"), True, False),
    (errors.ExtractionCancelled("a segment stopped"), True, False),
    (errors.BagIncomplete(RID, "a file missing"), False, True),
    (errors.IntegrityError(RID, "sha256 mismatch"), False, True),
    (errors.ObjectChanged(RID, "overwritten"), False, False),
])
def test_clean_up_leaves_what_the_error_class_says(tmp_path: Path, error: BaseException, temp_dir_left: bool,
                                                   evidence_kept: bool) -> None:
    temp_dir = temp_dir_for(tmp_path / "works", RID, "etag-1")
    temp_dir.mkdir(parents=True)
    (temp_dir / ".verified.jsonl").write_text("{}\n", encoding="utf-8")
    clean_up(error, temp_dir, RID, DebagSettings())
    evidence = [p for p in (tmp_path / "works").iterdir() if p.name.startswith(f".debag-failed-{RID}-etag-1-")]
    assert (temp_dir.is_dir(), bool(evidence)) == (temp_dir_left, evidence_kept)
    if evidence:
        assert (evidence[0] / ".verified.jsonl").is_file()
