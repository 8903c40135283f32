"""kill -9 of a real ``finisher run --drain`` inside the one fetch path, then a restart: the work is archived once,
the restart reads again only what was not verified (the segments in flight), and nothing is left in staging.

Kill points, one after the other on one work: during the tag files (the first bytes read after the tail),
mid-segments (two segments in flight of about ten), and after every member verified, before the works are placed
(``faults.BEFORE_PLACE``).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from onprem.finisher.work.faults import BEFORE_PLACE, MID_DOWNLOAD
from tests.reliability.faults import kill_at
from tests.reliability.harness import Bench, spec, sync_count, trial_bench

#: about ten segments of 128 KiB, two in flight: a kill mid-way leaves verified segments behind it
SEGMENTS = {"FINISHER_FETCH_PART_SIZE": str(128 * 1024), "FINISHER_FETCH_CONCURRENCY": "2"}
RID = "W1NLM4700"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    with trial_bench(tmp_path) as running:
        yield running


def _resumed_segments(bench: Bench) -> list[int]:
    history = bench.status().get(RID, {}).get("history", [])
    return [int(entry.get("segments_resumed") or 0) for entry in history if entry.get("phase") == "downloaded"
            or "segments_resumed" in entry]


def test_killed_in_the_fetch_three_times_then_restarted_archives_the_work_once_resuming_by_segment(
        bench: Bench) -> None:
    """One work through four runs: killed during its tag files, then mid-segments, then before placing; the
    fourth run places it from the segments the earlier runs verified."""
    work = bench.stage(spec(RID, images=5, image_bytes=96 * 1024))
    log = bench.paths.root / "finisher.log"
    for kill, nth in ((MID_DOWNLOAD, 1), (MID_DOWNLOAD, 6), (BEFORE_PLACE, 1)):
        code = bench.run(["run", "--drain"], env={**SEGMENTS, **kill_at(kill, nth)})
        assert code == -signal.SIGKILL, f"not killed at {kill}:{nth} (exit {code}): never reached?"
        assert not list(bench.paths.works_dir.glob(f"*/{RID}")), "nothing placed before the kill"
    assert bench.drain_until_quiet(env=SEGMENTS) == 0
    assert bench.problems([work]) == []
    assert sync_count(bench, RID) == 1
    assert max(_resumed_segments(bench), default=0) > 0, "the last run read no segment the others verified"
    assert "segment(s) verified before a restart" in log.read_text()
    assert not list(bench.paths.staging_dir.rglob("*.bag.zip*")), "the zip is never written"
