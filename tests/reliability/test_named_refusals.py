"""Refusals nothing upstream named, through a real ``finisher run --drain`` process against a loopback moto server.

An exception no stage names (here: a bug in the de-bag progress reporter, raised inside the real extraction of
one work) is retried ``unexpected_attempts`` times and then moved to the DLQ by the finisher itself, with
``failure_cause``/``failure_message`` — SQS's maxReceiveCount never moves it there without a reason — and the
de-bag temp dir of the last attempt is kept as evidence. A permanent refusal beside it is tried once: recorded,
sent to the DLQ with its cause, never downloaded again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from harness.moto_env import local_aws
from harness.pipeline import FinisherPaths
from harness.zip_edits import truncate_zip
from onprem.finisher.cli.app import main as finisher_main
from onprem.finisher.progress import Progress
from onprem.finisher.work.settings import Settings
from onprem.finisher.work.stages import StageContext, Stages, staging_slot
from onprem.finisher.work.wiring import real_stages
from tests.reliability.bad_zip import good_zip
from tests.reliability.harness import DEV, REPO_ROOT, Bench, StagedWork

BUG_RID, CORRUPT_RID = "W9BUG01", "W9CUT01"


class BuggyProgress:
    """A progress reporter with a bug: the first file extracted makes it raise (inside the real de-bag)."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner

    def start(self, total_bytes: int, total_files: int) -> None:
        self.inner.start(total_bytes, total_files)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        if files:
            raise RuntimeError("progress bar index out of range")
        self.inner.advance(nbytes, files)

    def finish(self) -> None:
        self.inner.finish()


def _buggy(ctx: StageContext) -> StageContext:
    wrap: Callable[[str], Progress] = lambda label: (  # noqa: E731 - a one-line adapter
        BuggyProgress(ctx.progress(label)) if label == "de-bag" else ctx.progress(label))
    return StageContext(ctx.cancel, wrap)


def stages_with_a_bug(settings: Settings, s3_client_for: Callable[[str], Any]) -> Stages:
    """The real stages, whose de-bag progress has a bug for ``BUG_RID`` only (the finisher process's, by ``main``)."""
    stages = real_stages(settings, s3_client_for)
    assert stages.fetch_debag is not None
    fetch_debag, debag = stages.fetch_debag, stages.debag
    return replace(
        stages,
        fetch_debag=lambda work, ctx: fetch_debag(work, _buggy(ctx) if work.work_rid == BUG_RID else ctx),
        debag=lambda rid, path, key, ctx: debag(rid, path, key, _buggy(ctx) if rid == BUG_RID else ctx))


@dataclass
class Drained:
    bench: Bench
    bug: StagedWork
    corrupt: StagedWork
    exit_code: int
    dlq: dict[str, dict[str, Any]]
    status: dict[str, dict[str, Any]]


def _truncated(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    truncate_zip(zip_path, zip_path.stat().st_size * 2 // 3)
    return zip_path


@pytest.fixture(scope="module")
def drained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drained]:
    root = tmp_path_factory.mktemp("named-refusals")
    with local_aws(DEV, config_dir=root / "aws") as aws:
        bench = Bench(aws, FinisherPaths(root / "out"), root)
        bug = bench.stage_zip(good_zip(root / "build", BUG_RID), BUG_RID)
        corrupt = bench.stage_zip(_truncated(root / "build", CORRUPT_RID), CORRUPT_RID)
        # the finisher process imports the factory from this module: the repository on its path
        code = bench.run(["run", "--drain"], env={"PYTHONPATH": str(REPO_ROOT), "FINISHER_UNEXPECTED_ATTEMPTS": "2"},
                         timeout_s=120, entry=__name__)
        dlq = {json.loads(m["Body"])["work_rid"]: m for m in bench.dlq_messages()}
        yield Drained(bench, bug, corrupt, code, dlq, bench.status())


def _attribute(message: dict[str, Any], name: str) -> str:
    return str(message.get("MessageAttributes", {}).get(name, {}).get("StringValue"))


def test_the_drain_ends_with_every_message_out_of_the_work_queue(drained: Drained) -> None:
    assert drained.exit_code == 0, drained.bench.paths.root / "finisher.log"
    assert drained.bench.queued() == 0
    assert sorted(drained.dlq) == [BUG_RID, CORRUPT_RID]


def test_an_unforeseen_exception_ends_in_the_dlq_with_its_cause_after_the_configured_attempts(
    drained: Drained,
) -> None:
    message = drained.dlq[BUG_RID]
    assert _attribute(message, "failure_cause") == "unexpected"
    reason = _attribute(message, "failure_message")
    assert reason.startswith(f"{BUG_RID}: unexpected RuntimeError: progress bar index out of range")
    assert "moved to the DLQ by the finisher" in reason
    row = drained.status[BUG_RID]
    assert (row["phase"], row["last_cause"], row["attempts"]) == ("failed", "unexpected", 2)
    assert [e["event"] for e in row["history"] if e["event"] in ("retry", "failed")] == ["retry", "failed"]


def test_the_last_unexpected_attempt_leaves_its_temp_dir_as_evidence_and_nothing_resumable(drained: Drained) -> None:
    slot = drained.bench.paths.works_dir / staging_slot(drained.bug.message.idempotency_key)
    names = [p.name for p in slot.iterdir()]
    assert [n for n in names if n.startswith(f".debag-failed-{BUG_RID}-")], names
    assert [n for n in names if not n.startswith(".debag-failed-")] == []


def test_a_permanent_refusal_is_tried_once_and_never_downloaded_again(drained: Drained) -> None:
    message = drained.dlq[CORRUPT_RID]
    assert _attribute(message, "failure_cause") == "corrupt_zip"
    assert _attribute(message, "failure_message").startswith(f"{CORRUPT_RID}: ")
    row = drained.status[CORRUPT_RID]
    assert (row["phase"], row["last_cause"], row["attempts"]) == ("failed", "corrupt_zip", 1)
    assert [e["event"] for e in row["history"]].count("failed") == 1
    assert not any(e["event"] == "retry" for e in row["history"])


def main() -> None:
    """``finisher`` with the buggy stages: what the drained fixture's finisher process runs (``python -m``)."""
    finisher_main(stages_for=stages_with_a_bug)


if __name__ == "__main__":
    main()
