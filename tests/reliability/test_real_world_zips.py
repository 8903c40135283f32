"""Valid bag zips written by other tools are taken by the real de-bag, from disk and fetched from a moto bucket.

The zips (``real_zips.py``): Info-ZIP ``zip -r`` (unflagged raw UTF-8 names, made on Unix), 7-Zip's normal
deflate (names flagged UTF-8), and the shape macOS Finder's Compress writes (NFD names unflagged, data
descriptors, ``__MACOSX/._*`` and a ``.DS_Store`` beside the bag). What each tool writes is asserted here, so
the docstring of ``real_zips.py`` stays true. Through moto: the one fetch path, with one segment or many (the zip
never written; the macOS shape's data descriptors read past).
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, fetch_and_debag
from tests.reliability.real_zips import NAMES, info_zip_bag, macos_zip_bag, seven_zip_bag

SETTINGS = DebagSettings(workers=2, fsync=False)
BUILDERS: dict[str, Callable[[Path, str], Path]] = {
    "info_zip": info_zip_bag, "seven_zip_deflate": seven_zip_bag, "macos_finder": macos_zip_bag,
}
FETCH_MODES = {
    "one_segment": FetchSettings(part_size=2**30, max_concurrency=1, min_free_bytes=0),
    "segments": FetchSettings(part_size=64 * 1024, max_concurrency=2, min_free_bytes=0),
}


def _rid(name: str) -> str:
    return f"W1RZ_{name}"


def _source_payload(tmp_path: Path, rid: str) -> dict[str, str]:
    """sha256 by NFC path of the bag's payload as bagit-python left it (the source of every zip here)."""
    data = tmp_path / rid / "src" / f"{rid}.bag" / "data"
    return {unicodedata.normalize("NFC", p.relative_to(data).as_posix()): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in data.rglob("*") if p.is_file()}


def _staged_payload(staging: Path, rid: str) -> dict[str, str]:
    work = staging / rid
    return {unicodedata.normalize("NFC", p.relative_to(work).as_posix()): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in work.rglob("*") if p.is_file() and f"{rid}.bag" not in p.relative_to(work).parts}


def _staging(tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return staging


def _taken(tmp_path: Path, staging: Path, rid: str, works: list) -> None:  # type: ignore[type-arg]
    assert [(w.work_rid, w.fixity_checked, w.files) for w in works] == [(rid, True, 3 + len(NAMES))]
    assert _staged_payload(staging, rid) == _source_payload(tmp_path, rid)
    assert sorted(p.name for p in staging.iterdir()) == [rid], "no temp dir, no junk, nothing else"
    for junk in ("__MACOSX", ".DS_Store", "._*"):
        assert not list(staging.rglob(junk)), junk


def test_info_zip_writes_raw_utf8_names_without_the_flag_and_they_are_taken(tmp_path: Path) -> None:
    rid = _rid("info_zip")
    zip_path = info_zip_bag(tmp_path, rid)
    with zipfile.ZipFile(zip_path) as zf:
        tibetan = [i for i in zf.infolist() if i.orig_filename.endswith(".tif") and not i.orig_filename.isascii()]
    assert tibetan and all(not i.flag_bits & 0x800 and i.create_system == 3 for i in tibetan)
    assert tibetan[0].filename != f"{rid}.bag/data/sources/{NAMES[0]}", "zipfile alone reads it as cp437"
    staging = _staging(tmp_path)
    _taken(tmp_path, staging, rid, debag_archive(zip_path, rid, staging, SETTINGS).works)
    assert (staging / rid / "sources" / NAMES[0]).is_file(), "the Tibetan name as it was written, not mojibake"


def test_seven_zip_normal_deflate_is_taken(tmp_path: Path) -> None:
    rid = _rid("seven_zip")
    zip_path = seven_zip_bag(tmp_path, rid)
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
    assert zipfile.ZIP_DEFLATED in {i.compress_type for i in infos}
    assert all(i.flag_bits & 0x800 for i in infos if not i.orig_filename.isascii())
    staging = _staging(tmp_path)
    _taken(tmp_path, staging, rid, debag_archive(zip_path, rid, staging, SETTINGS).works)


def test_a_macos_finder_zip_is_taken_and_its_junk_ignored_and_logged(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    rid = _rid("macos")
    zip_path = macos_zip_bag(tmp_path, rid)
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
    junk = [i for i in infos if i.orig_filename.startswith("__MACOSX/") or i.orig_filename == ".DS_Store"]
    assert junk and all(i.flag_bits & 0x08 and not i.flag_bits & 0x800 for i in infos)
    staging = _staging(tmp_path)
    with caplog.at_level(logging.INFO):
        works = debag_archive(zip_path, rid, staging, SETTINGS).works
    _taken(tmp_path, staging, rid, works)
    logged = [r for r in caplog.records if "macOS entries ignored" in r.getMessage()]
    assert len(logged) == 1 and logged[0].work_rid == rid and f"{len(junk)} macOS entries" in logged[0].getMessage()
    placed = {p.name for p in (staging / rid / "sources").iterdir()}
    assert {unicodedata.normalize("NFC", n) for n in placed} == set(NAMES)


def _put(s3, bucket: str, zip_path: Path, rid: str) -> FetchRequest:  # type: ignore[no-untyped-def]
    key = f"Archive0/00/{rid}/{rid}.bag.zip"
    put = s3.put_object(Bucket=bucket, Key=key, Body=zip_path.read_bytes(), ChecksumAlgorithm="SHA256")
    return FetchRequest(rid, bucket, key, zip_path.stat().st_size, put["ETag"], put["VersionId"])


@pytest.mark.parametrize("mode", FETCH_MODES.keys())
@pytest.mark.parametrize("tool", BUILDERS.keys())
def test_other_tools_zips_are_taken_through_fetch_and_debag_from_moto(  # type: ignore[no-untyped-def]
    s3, bucket: str, tmp_path: Path, tool: str, mode: str,
) -> None:
    rid = _rid(tool)
    request = _put(s3, bucket, BUILDERS[tool](tmp_path, rid), rid)
    staging = _staging(tmp_path)
    ranges: list[str | None] = []
    s3.meta.events.register("before-call.s3.GetObject",
                            lambda params, **_: ranges.append(params["headers"].get("Range")))
    result = fetch_and_debag(s3, FetchDebagJob(request, staging, FETCH_MODES[mode], SETTINGS,
                                               version_tag=request.version_id))
    _taken(tmp_path, staging, rid, result.debag.works)
    assert result.fetch.checksum_verified is None  # a SHA-256 full-object checksum does not combine from ranges
    assert None not in ranges, "ranged GETs only"
