"""Bomb limits (``zip_budget.py``): what deflate can really do is taken, what only a bomb does is refused while
inflating, before more than the limit is written; the entry count is refused from the End of central directory."""

from __future__ import annotations

import random
import time
import zipfile
from pathlib import Path

import pytest

from harness.bags import image_group, make_bagit_bag, write_work_tree, zip_entries, zip_tree
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.budget import InflateBudget
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.safety import guard_member
from onprem.finisher.debag.staging import JOURNAL_NAME
from onprem.finisher.errors import ZipBomb
from onprem.finisher.work.settings import load_settings

RID = "W1NLM4700"
MIB = 2**20
SETTINGS = DebagSettings(workers=2, fsync=False)
BLANK_PAGE = bytes(4 * MIB)  # a blank 4 MiB scan: deflate packs it about 1028:1


def _staging(tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return staging


def _written(staging: Path) -> int:
    """Bytes of every member written under ``staging`` (the evidence of a failed de-bag; not its journal)."""
    return sum(p.stat().st_size for p in staging.rglob("*") if p.is_file() and p.name != JOURNAL_NAME)


def _bomb_members(count: int, size: int = MIB - 1) -> list[tuple[str, bytes]]:
    """``count`` members of zeros, each under 1 MiB: a few KiB compressed for ``count`` MiB inflated."""
    return [(f"{RID}/images/{RID}_{i:04d}.tif", bytes(size)) for i in range(count)]


def test_a_blank_page_deflated_near_deflates_ceiling_is_taken(tmp_path: Path) -> None:
    work = write_work_tree(tmp_path / "src", RID, files_per_work=1)
    (work / image_group(RID) / "images" / f"{image_group(RID)}_0002.tif").write_bytes(BLANK_PAGE)
    make_bagit_bag(work)
    zip_path = zip_tree(tmp_path / f"{RID}.bag.zip", [(f"{RID}.bag", work)], compression=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(zip_path) as zf:
        blank = next(i for i in zf.infolist() if i.filename.endswith("_0002.tif"))
    assert blank.file_size / blank.compress_size > 1000, "deflate's real ratio for a blank page"
    staging = _staging(tmp_path)
    result = debag_archive(zip_path, RID, staging, SETTINGS)
    assert result.works[0].fixity_checked
    assert (staging / RID / image_group(RID) / "images" / f"{image_group(RID)}_0002.tif").read_bytes() == BLANK_PAGE


def test_a_declared_ratio_past_deflates_ceiling_is_a_bomb_before_inflating() -> None:
    info = zipfile.ZipInfo(f"{RID}/images/a.tif")
    info.file_size, info.compress_size, info.compress_type = 2_000_000, 1000, zipfile.ZIP_DEFLATED
    with pytest.raises(ZipBomb, match=r"ratio of 2000 \(limit 1100"):
        guard_member(info, RID, SETTINGS)


def test_small_members_inflating_to_hundreds_of_mib_stop_at_the_floor(tmp_path: Path) -> None:
    """300 members of 1 MiB - 1 byte of zeros (~300 KiB of zip, 300 MiB inflated): none is large, each is a
    real deflate stream under the per-member ratio; the whole-zip ratio, from what the central directory declares
    (past the 64 MiB floor), refuses them before a byte is written."""
    zip_path = zip_entries(tmp_path / "w.zip", _bomb_members(300), compression=zipfile.ZIP_DEFLATED)
    assert zip_path.stat().st_size < 600 * 1024
    staging = _staging(tmp_path)
    with pytest.raises(ZipBomb, match=r"members declare \d+ bytes from \d+ compressed") as caught:
        debag_archive(zip_path, RID, staging, SETTINGS)
    assert str(caught.value).startswith(f"{RID}: ")
    assert _written(staging) == 0, "refused from the central directory"
    assert not (staging / RID).exists()


def test_the_whole_zip_ratio_waits_for_its_floor(tmp_path: Path) -> None:
    settings = DebagSettings(workers=2, fsync=False, zip_ratio_floor_bytes=8 * MIB)
    zip_path = zip_entries(tmp_path / "w.zip", _bomb_members(6), compression=zipfile.ZIP_DEFLATED)
    debag_archive(zip_path, RID, _staging(tmp_path), settings)  # 6 MiB at ~1000:1: under the floor, taken
    bomb = zip_entries(tmp_path / "b.zip", _bomb_members(12), compression=zipfile.ZIP_DEFLATED)
    staging = tmp_path / "staging-bomb"
    staging.mkdir()
    with pytest.raises(ZipBomb):
        debag_archive(bomb, RID, staging, settings)
    assert _written(staging) <= 8 * MIB


def test_compressible_text_past_the_floor_is_taken_under_the_zip_ratio(tmp_path: Path) -> None:
    settings = DebagSettings(workers=2, fsync=False, zip_ratio_floor_bytes=MIB)
    words = ["བོད་", "ཡིག", "ཆོས་", "སྐད་", "དཔེ་", "ཀ", "the", "text", "of", "a", "page", "line"]
    rng = random.Random(14)
    text = " ".join(rng.choice(words) for _ in range(600_000)).encode()  # an e-text: a few MiB at ~5:1
    zip_path = zip_entries(tmp_path / "w.zip", [(f"{RID}/sources/etext.txt", text)], compression=zipfile.ZIP_DEFLATED)
    staging = _staging(tmp_path)
    debag_archive(zip_path, RID, staging, settings)
    assert (staging / RID / "sources" / "etext.txt").read_bytes() == text


def test_the_budget_counts_every_thread_and_refuses_the_chunk_that_passes() -> None:
    settings = DebagSettings(zip_ratio_floor_bytes=1000, max_zip_ratio=10)
    budget = InflateBudget(RID, settings)
    budget.take(100, 0, "a")
    budget.take(0, 1000, "a")  # at the floor: not past it
    with pytest.raises(ZipBomb, match=r"member 'b': the zip inflates 1001 bytes from 100 compressed \(ratio 10"):
        budget.take(0, 1, "b")


def test_more_entries_than_the_limit_are_a_bomb(tmp_path: Path) -> None:
    entries = [(f"{RID}/images/{i}.tif", b"x") for i in range(51)]
    zip_path = zip_entries(tmp_path / "w.zip", entries)
    settings = DebagSettings(workers=2, fsync=False, max_entries=50)
    with pytest.raises(ZipBomb, match=r"51 entries or more \(limit 50\)"):
        debag_archive(zip_path, RID, _staging(tmp_path), settings)


def test_an_end_record_declaring_millions_of_entries_is_refused_at_once(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [(f"{RID}/images/a.tif", b"x")])
    raw = bytearray(zip_path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 8:end + 12] = (0xFFFF).to_bytes(2, "little") * 2  # 65,535 entries on this disk and in all
    zip_path.write_bytes(bytes(raw))
    started = time.monotonic()
    with pytest.raises(ZipBomb, match="65535 entries"):
        debag_archive(zip_path, RID, _staging(tmp_path), DebagSettings(fsync=False, max_entries=1000))
    assert time.monotonic() - started < 1


def test_the_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINISHER_DEBAG_MAX_ENTRIES", "20000")
    monkeypatch.setenv("FINISHER_DEBAG_MAX_ZIP_RATIO", "50")
    monkeypatch.setenv("FINISHER_DEBAG_ZIP_RATIO_FLOOR_BYTES", str(16 * MIB))
    monkeypatch.setenv("FINISHER_DEBAG_MAX_MEMBER_RATIO", "1200")
    monkeypatch.setenv("FINISHER_DEBAG_MAX_PATH_BYTES", "3000")
    debag = load_settings(env_name="dev").debag
    assert (debag.max_entries, debag.max_zip_ratio, debag.zip_ratio_floor_bytes) == (20000, 50, 16 * MIB)
    assert (debag.max_member_ratio, debag.max_path_bytes) == (1200, 3000)
    assert debag.max_member_bytes == DebagSettings().max_member_bytes, "unset: the default"
