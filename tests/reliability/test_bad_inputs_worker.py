"""Bad inputs through the whole worker: message → ``finisher run --drain`` (a separate process) → DLQ.

Every bad zip of ``bad_inputs.BAD_ZIPS`` and every bad message goes through one drain, side by side with one good
work. Each must end in the DLQ with its reason as message attributes (``failure_cause``/``failure_message``), its
ledger row ``failed`` with the same cause, nothing of it in the archive or the staging layout — and the good work
must be synced regardless.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from config.loader import load_environment
from contract.keys import archive_relpath_for_rid
from harness.moto_env import local_aws
from harness.pipeline import FinisherPaths
from tests.reliability.bad_inputs import BAD_ZIPS, BadZip
from tests.reliability.harness import Bench, StagedWork, spec

DEV = load_environment("dev")
GOOD_RID = "W1GOOD0001"
#: bad messages (no zip behind them): body → the cause the worker must record
BAD_MESSAGES = {
    "malformed_json": ('{"schema_version": 1, "work_rid": "W9MSG01", ', "contract"),
    "json_array": ('[1, 2, 3]', "contract"),
    "missing_fields": ('{"schema_version": 1, "work_rid": "W9MSG02", "bucket": "b"}', "contract"),
    "unknown_schema_version": ('{"schema_version": 99, "work_rid": "W9MSG03"}', "contract"),
}


#: the bad works fail in milliseconds and no work syncs before the last: at the backlog's prior of one sync a second
#: the look-ahead hid the back of the backlog ~13 s and ~9 s for turns that came at once (drain 32 s, now 6 s)
_DRAIN_ENV = {"FINISHER_REQUIRE_STRONG_CHECKSUMS": "true", "FINISHER_BACKLOG_PRIOR_RATE": "144000"}


@dataclass
class Drained:
    bench: Bench
    staged: dict[str, StagedWork]
    good: StagedWork
    exit_code: int
    dlq: list[dict[str, Any]]
    status: dict[str, dict[str, Any]]
    ledger_rows: list[dict[str, Any]]

    def dlq_for_body(self, predicate: Any) -> list[dict[str, Any]]:
        return [m for m in self.dlq if predicate(m["Body"])]


def _rid(index: int) -> str:
    return f"W9BAD{index:02d}"


@pytest.fixture(scope="module")
def drained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drained]:
    root = tmp_path_factory.mktemp("bad-inputs")
    with local_aws(DEV, config_dir=root / "aws") as aws:
        bench = Bench(aws, FinisherPaths(root / "out"), root)
        staged = {name: bench.stage_zip(case.build(root / "build", _rid(i)), _rid(i))
                  for i, (name, case) in enumerate(BAD_ZIPS.items())}
        for body, _cause in BAD_MESSAGES.values():
            bench.send(body, region=staged["bad_crc"].region)
        good = bench.stage(spec(GOOD_RID))
        code = bench.run(["run", "--drain"], env=_DRAIN_ENV, timeout_s=180)
        status = bench.status()
        ledger = bench.ledger_rows()
        yield Drained(bench, staged, good, code, bench.dlq_messages(), status, ledger)


def _rid_of(body: str) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("work_rid") if isinstance(document, dict) else None


def _attribute(message: dict[str, Any], name: str) -> str | None:
    return message.get("MessageAttributes", {}).get(name, {}).get("StringValue")


def test_drain_ends_cleanly_and_the_good_work_is_synced_beside_the_bad_ones(drained: Drained) -> None:
    assert drained.exit_code == 0, drained.bench.paths.root / "finisher.log"
    assert drained.bench.archive_problems([drained.good]) == []
    assert drained.status[GOOD_RID]["phase"] == "synced"
    assert drained.bench.queued() == 0


@pytest.mark.parametrize("case", BAD_ZIPS.values(), ids=BAD_ZIPS.keys())
def test_bad_zip_ends_in_the_dlq_with_its_reason_and_leaves_the_archive_untouched(
    drained: Drained, case: BadZip,
) -> None:
    work = drained.staged[case.name]
    rid = work.work_rid
    in_dlq = drained.dlq_for_body(lambda body: _rid_of(body) == rid)
    assert len(in_dlq) == 1, f"{rid}: {len(in_dlq)} DLQ messages"
    assert _attribute(in_dlq[0], "failure_cause") == case.cause
    assert (_attribute(in_dlq[0], "failure_message") or "").startswith(f"{rid}: ")
    row = drained.status[rid]
    assert (row["phase"], row["last_cause"]) == ("failed", case.cause)
    assert not (drained.bench.paths.archive_root / archive_relpath_for_rid(rid)).exists()
    works = drained.bench.paths.works_dir
    assert not [*works.glob(rid), *works.glob(f"*/{rid}")], f"{rid}: a staged copy of a refused work"


@pytest.mark.parametrize("name", BAD_MESSAGES.keys())
def test_bad_message_ends_in_the_dlq_as_a_contract_error(drained: Drained, name: str) -> None:
    body, cause = BAD_MESSAGES[name]
    in_dlq = drained.dlq_for_body(lambda candidate: candidate == body)
    assert len(in_dlq) == 1
    assert _attribute(in_dlq[0], "failure_cause") == cause
    rejected = [r for r in drained.ledger_rows if r["message_body"] == body]
    assert len(rejected) == 1 and (rejected[0]["phase"], rejected[0]["last_cause"]) == ("failed", cause)


def test_nothing_but_the_good_work_reaches_the_archive(drained: Drained) -> None:
    archived = sorted(p.name for p in drained.bench.paths.archive_root.glob("Archive*/*/*"))
    assert archived == [GOOD_RID]
