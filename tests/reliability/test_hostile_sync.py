"""Hostile bags at the sync stage, through a real ``finisher run --drain`` against moto and the real sync script.

A bag's own ``data/config/sync.yml`` must not decide where the work goes: whatever it says (no archive, another
archive, replace, a web destination), the work lands at ``archive_root/Archive{n}/{NN}/{RID}`` equal to its bag,
nothing is written elsewhere, and the ledger says ``synced``. A re-restore of a changed work replaces the archive
copy: files only in the previous version do not survive.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract.keys import archive_relpath_for_rid
from harness.bags import make_bagit_bag, write_work_tree, zip_tree
from tests.reliability.harness import Bench, trial_bench

#: somewhere a bag would like its work to go: must stay empty
ELSEWHERE = "elsewhere"
#: work RID → its bag's config/sync.yml (``{elsewhere}`` is replaced by a folder of the trial)
HOSTILE_SYNC_FILES = {
    "W9SYNC01": "sync:\n  archive: null\n",
    "W9SYNC02": "sync:\n  archive: {elsewhere}\n",
    "W9SYNC03": "sync:\n  replace: true\n",
    "W9SYNC04": "sync:\n  web: s3://someone-elses-bucket/works\n  replace: true\n",
}
RE_RESTORED = "W9SYNC05"


@dataclass(frozen=True)
class BuiltBag:
    """A zipped bag and the tree the archive must hold for it (payload at the top, tag files in ``RID.bag/``)."""

    zip_path: Path
    expected: dict[str, bytes]


def build_bag(root: Path, rid: str, extra: dict[str, str]) -> BuiltBag:
    """A bagit-python bag of a small BDRC work plus ``extra`` files (relative to the work), zipped as bdrc-bag."""
    build = root / f"build-{rid}-{len(list(root.glob(f'build-{rid}-*')))}"
    work = write_work_tree(build, rid, files_per_work=2, file_size=2048)
    for relpath, text in extra.items():
        (work / relpath).parent.mkdir(parents=True, exist_ok=True)
        (work / relpath).write_text(text)
    make_bagit_bag(work)
    expected = {}
    for path in sorted(work.rglob("*")):
        if path.is_file():
            rel = path.relative_to(work).as_posix()
            expected[rel.removeprefix("data/") if rel.startswith("data/") else f"{rid}.bag/{rel}"] = path.read_bytes()
    zip_path = zip_tree(build / f"{rid}.bag.zip", [(f"{rid}.bag", work)])
    shutil.rmtree(work)
    return BuiltBag(zip_path, expected)


def archived_tree(bench: Bench, rid: str) -> dict[str, bytes]:
    folder = bench.paths.archive_root / archive_relpath_for_rid(rid)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Drained:
    bench: Bench
    bags: dict[str, BuiltBag]
    first_version: BuiltBag
    exit_codes: tuple[int, int]
    archived_after_first: dict[str, bytes]


@pytest.fixture(scope="module")
def drained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drained]:
    root = tmp_path_factory.mktemp("hostile-sync")
    elsewhere = root / ELSEWHERE
    elsewhere.mkdir()
    with trial_bench(root) as bench:
        # the archive root exists before the finisher starts (it never creates one for a sync)
        bench.paths.archive_root.mkdir(parents=True, exist_ok=True)
        bags = {rid: build_bag(root, rid, {"config/sync.yml": text.format(elsewhere=elsewhere)})
                for rid, text in HOSTILE_SYNC_FILES.items()}
        for rid, bag in bags.items():
            bench.stage_zip(bag.zip_path, rid)
        first = build_bag(root, RE_RESTORED, {"sources/only-in-v1.txt": "gone in v2",
                                              "config/sync.yml": "sync:\n  replace: false\n"})
        bench.stage_zip(first.zip_path, RE_RESTORED)
        first_code = bench.drain_until_quiet(timeout_s=180)
        archived_after_first = archived_tree(bench, RE_RESTORED)
        second = build_bag(root, RE_RESTORED, {"sources/new-in-v2.txt": "v2",
                                               "config/sync.yml": "sync:\n  replace: false\n"})
        bags[RE_RESTORED] = second
        bench.stage_zip(second.zip_path, RE_RESTORED)
        second_code = bench.drain_until_quiet(timeout_s=180)
        yield Drained(bench, bags, first, (first_code, second_code), archived_after_first)


def test_drains_end_cleanly_with_nothing_in_the_dlq(drained: Drained) -> None:
    assert drained.exit_codes == (0, 0), drained.bench.paths.root / "finisher.log"
    assert drained.bench.dlq_messages() == [] and drained.bench.queued() == 0


@pytest.mark.parametrize("rid", HOSTILE_SYNC_FILES)
def test_a_bags_own_sync_file_never_decides_where_the_work_goes(drained: Drained, rid: str) -> None:
    assert archived_tree(drained.bench, rid) == drained.bags[rid].expected
    assert drained.bench.status()[rid]["phase"] == "synced"
    assert list((drained.bench.scratch / ELSEWHERE).iterdir()) == []
    assert not list(drained.bench.paths.works_dir.glob(f"*/{rid}"))  # synced: its staged copy removed


def test_the_ignored_keys_are_logged_with_the_work(drained: Drained) -> None:
    log = (drained.bench.paths.root / "finisher.log").read_text(encoding="utf-8")
    for rid in HOSTILE_SYNC_FILES:
        assert any(rid in line and "ignored in the work's own" in line for line in log.splitlines()), rid


def test_a_re_restore_replaces_the_archive_copy_with_exactly_the_new_bag(drained: Drained) -> None:
    assert drained.archived_after_first == drained.first_version.expected
    archived = archived_tree(drained.bench, RE_RESTORED)
    assert archived == drained.bags[RE_RESTORED].expected
    assert "sources/only-in-v1.txt" not in archived and "sources/new-in-v2.txt" in archived


def test_nothing_half_written_or_misplaced_beside_the_works(drained: Drained) -> None:
    root = drained.bench.paths.archive_root
    placed = sorted(p.relative_to(root).as_posix() for p in root.glob("Archive*/*/*"))
    assert placed == sorted(archive_relpath_for_rid(rid).as_posix() for rid in drained.bags)
