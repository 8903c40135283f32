"""Bags made by real tools, and by hand as RFC 8493 allows, are taken by the real de-bag (``debag_archive``) and
through fetch + de-bag from a moto bucket.

What each tool writes (checked in the tests below, so this stays true):

- bagit-python 1.9 ``make_bag``: ``BagIt-Version: 0.97``, ``Tag-File-Character-Encoding: UTF-8``, the
  algorithms asked for (default sha256 + sha512), ``manifest-<alg>.txt`` lines ``<digest>  <path>`` with only
  CR/LF percent-encoded (``%`` never), tag manifests ``<digest> <file>`` covering bagit.txt, bag-info.txt and
  the manifests, bag-info with Bag-Software-Agent, Bagging-Date, Payload-Oxum; one line per value.
- bdrc-bag 0.0.7 (``bdrc-bag -b -p SRC DST``, bagit-python underneath): the same 0.97 bag with sha512 only and
  ``BDRC-RID: <folder name>`` in bag-info, zipped stored (no compression) as ``DST/<RID>.bag.zip`` holding
  ``<RID>.bag/`` with directory entries, created on Unix, no UTF-8 flag on ASCII names.
- BagIt 1.0 (no tool at hand writes it: bagit.txt and manifests written here as RFC 8493 §2.1.3 says):
  ``%`` in a path as ``%25``, CR/LF as ``%0D``/``%0A``.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import bagit
import pytest

from harness.bags import write_work_tree, zip_tree
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, fetch_and_debag

RID = "W1REAL0001"
SETTINGS = DebagSettings(workers=2, fsync=False, require_strong_checksums=True)
FETCH = FetchSettings(part_size=64 * 1024, max_concurrency=2, min_free_bytes=0)
BDRC_BAG = Path(sys.executable).with_name("bdrc-bag")


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


def _source(tmp_path: Path, extra_names: tuple[str, ...] = ()) -> Path:
    return write_work_tree(tmp_path / "src", RID, files_per_work=3, extra_names=extra_names)


def _bagit_bag(tmp_path: Path, algorithms: list[str], extra_names: tuple[str, ...] = ()) -> Path:
    """A copy of the source tree bagged in place by bagit-python."""
    bag_dir = tmp_path / "bag" / RID
    shutil.copytree(_source(tmp_path, extra_names), bag_dir)
    bagit.make_bag(str(bag_dir), {"BDRC-RID": RID}, processes=1, checksums=algorithms)
    return bag_dir


def _refresh_tagmanifests(bag_dir: Path) -> None:
    """Recompute every tag manifest after a tag file was changed (with bagit's own writer)."""
    with contextlib.chdir(bag_dir):  # bagit finds the tag files relative to the working directory
        for tagmanifest in bag_dir.glob("tagmanifest-*.txt"):
            bagit._make_tagmanifest_file(tagmanifest.stem.removeprefix("tagmanifest-"), str(bag_dir))


def _zip(bag_dir: Path, tmp_path: Path) -> Path:
    return zip_tree(tmp_path / f"{RID}.bag.zip", [(f"{RID}.bag", bag_dir)], compression=zipfile.ZIP_STORED)


def _payload(tree: Path, skip: str | None = None) -> dict[str, str]:
    return {p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in tree.rglob("*") if p.is_file() and (skip is None or skip not in p.parts)}


def _assert_staged_as_source(tmp_path: Path, staging: Path) -> None:
    assert _payload(staging / RID, skip=f"{RID}.bag") == _payload(tmp_path / "src" / RID)


@pytest.mark.parametrize("algorithms", [["md5", "sha256"], ["sha512"], ["sha256", "sha512"]],
                         ids=["md5+sha256", "sha512-only", "bagit-default"])
def test_bagit_python_bags_are_taken(tmp_path: Path, staging: Path, algorithms: list[str]) -> None:
    bag_dir = _bagit_bag(tmp_path, algorithms)
    assert (bag_dir / "bagit.txt").read_text() == "BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8\n"
    work = debag_archive(_zip(bag_dir, tmp_path), RID, staging, SETTINGS).works[0]
    assert work.fixity_checked and sorted(work.algorithms) == sorted(algorithms)
    _assert_staged_as_source(tmp_path, staging)


def test_bagit_0_97_bag_keeps_a_literal_percent_name(tmp_path: Path, staging: Path) -> None:
    bag_dir = _bagit_bag(tmp_path, ["sha256"], extra_names=("50%.tif", "a%25b.txt"))
    manifest = (bag_dir / "manifest-sha256.txt").read_text()
    assert "data/sources/50%.tif" in manifest and "data/sources/a%25b.txt" in manifest  # bagit never encodes %
    debag_archive(_zip(bag_dir, tmp_path), RID, staging, SETTINGS)
    _assert_staged_as_source(tmp_path, staging)


def _as_bagit_1_0(bag_dir: Path) -> None:
    """Rewrite a bagit-python bag as BagIt 1.0: version line, ``%`` percent-encoded in every manifest path."""
    (bag_dir / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    for manifest in bag_dir.glob("manifest-*.txt"):
        lines = [line.split("  ", 1) for line in manifest.read_text().splitlines()]
        manifest.write_text("".join(f"{digest}  {path.replace('%', '%25')}\n" for digest, path in lines))
    _refresh_tagmanifests(bag_dir)


def test_bagit_1_0_bag_lists_percent_as_25_and_verifies(tmp_path: Path, staging: Path) -> None:
    bag_dir = _bagit_bag(tmp_path, ["sha512"], extra_names=("50%.tif", "a%25b.txt"))
    _as_bagit_1_0(bag_dir)
    manifest = (bag_dir / "manifest-sha512.txt").read_text()
    assert "data/sources/50%25.tif" in manifest and "data/sources/a%2525b.txt" in manifest
    work = debag_archive(_zip(bag_dir, tmp_path), RID, staging, SETTINGS).works[0]
    assert work.fixity_checked and (staging / RID / "sources" / "50%.tif").is_file()
    assert (staging / RID / "sources" / "a%25b.txt").is_file()
    _assert_staged_as_source(tmp_path, staging)


def test_bag_info_with_folded_multi_line_values_is_taken(tmp_path: Path, staging: Path) -> None:
    bag_dir = _bagit_bag(tmp_path, ["sha256"])
    with (bag_dir / "bag-info.txt").open("a", encoding="utf-8") as info:
        info.write("External-Description: a scan of the Tibetan text བོད་ཡིག,\n  continued on a second line\n"
                   "\tand a third one\nContact-Name: one\nContact-Name: two\n")
    _refresh_tagmanifests(bag_dir)
    assert bagit._load_tag_file(str(bag_dir / "bag-info.txt"))["Contact-Name"] == ["one", "two"]
    assert debag_archive(_zip(bag_dir, tmp_path), RID, staging, SETTINGS).works[0].fixity_checked


def test_crlf_tag_files_and_manifests_are_taken(tmp_path: Path, staging: Path) -> None:
    bag_dir = _bagit_bag(tmp_path, ["sha256", "sha512"])
    for name in ["bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt"]:
        path = bag_dir / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    _refresh_tagmanifests(bag_dir)
    for tagmanifest in bag_dir.glob("tagmanifest-*.txt"):
        tagmanifest.write_bytes(tagmanifest.read_bytes().replace(b"\n", b"\r\n"))
    assert b"\r\n" in (bag_dir / "manifest-sha256.txt").read_bytes()
    assert debag_archive(_zip(bag_dir, tmp_path), RID, staging, SETTINGS).works[0].fixity_checked
    _assert_staged_as_source(tmp_path, staging)


def test_a_bag_declared_in_latin_1_is_taken(tmp_path: Path, staging: Path) -> None:
    bag_dir = _bagit_bag(tmp_path, ["sha256"])
    (bag_dir / "bagit.txt").write_text("BagIt-Version: 0.97\nTag-File-Character-Encoding: ISO-8859-1\n")
    with (bag_dir / "bag-info.txt").open("ab") as info:
        info.write("Contact-Name: Chödrön\n".encode("latin-1"))
    _refresh_tagmanifests(bag_dir)
    assert debag_archive(_zip(bag_dir, tmp_path), RID, staging, SETTINGS).works[0].fixity_checked


def _bdrc_bag_zip(tmp_path: Path, extra_names: tuple[str, ...] = ()) -> Path:
    """``bdrc-bag -b -p`` on a work folder: the BDRC tool's own command line, in its own process."""
    source = _source(tmp_path, extra_names)
    out = tmp_path / "bdrc-bag-out"
    subprocess.run([str(BDRC_BAG), "-b", "-p", str(source), str(out)], check=True, capture_output=True, timeout=120)
    return out / f"{RID}.bag.zip"


def test_bdrc_bag_cli_zip_is_taken_and_is_what_the_docstring_says(tmp_path: Path, staging: Path) -> None:
    zip_path = _bdrc_bag_zip(tmp_path, extra_names=("ཀ་ཁ་ག.txt", "with space.txt"))
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        tags = {name: zf.read(f"{RID}.bag/{name}").decode() for name in ("bagit.txt", "bag-info.txt")}
        names = set(zf.namelist())
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED} and {i.create_system for i in infos} == {3}
    assert f"{RID}.bag/" in names and f"{RID}.bag/manifest-sha512.txt" in names
    assert not any("manifest-sha256" in n for n in names)
    assert tags["bagit.txt"].startswith("BagIt-Version: 0.97\n") and f"BDRC-RID: {RID}\n" in tags["bag-info.txt"]
    work = debag_archive(zip_path, RID, staging, SETTINGS).works[0]
    assert work.fixity_checked and work.algorithms == ("sha512",)
    _assert_staged_as_source(tmp_path, staging)


def _put(s3, bucket: str, zip_path: Path) -> FetchRequest:  # type: ignore[no-untyped-def]
    key = f"Archive0/00/{RID}/{RID}.bag.zip"
    put = s3.put_object(Bucket=bucket, Key=key, Body=zip_path.read_bytes(), ChecksumAlgorithm="SHA256")
    return FetchRequest(RID, bucket, key, zip_path.stat().st_size, put["ETag"], put["VersionId"])


def test_bdrc_bag_zip_is_taken_through_fetch_and_debag_from_moto(s3, bucket: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                 staging: Path) -> None:
    request = _put(s3, bucket, _bdrc_bag_zip(tmp_path))
    result = fetch_and_debag(s3, FetchDebagJob(request, staging, FETCH, SETTINGS))
    assert [w.work_rid for w in result.debag.works] == [RID] and result.debag.works[0].fixity_checked
    _assert_staged_as_source(tmp_path, staging)


def test_bagit_1_0_bag_is_taken_through_fetch_and_debag_from_moto(s3, bucket: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                  staging: Path) -> None:
    bag_dir = _bagit_bag(tmp_path, ["sha512"], extra_names=("50%.tif",))
    _as_bagit_1_0(bag_dir)
    result = fetch_and_debag(s3, FetchDebagJob(_put(s3, bucket, _zip(bag_dir, tmp_path)), staging, FETCH, SETTINGS))
    work = result.debag.works[0]
    assert work.fixity_checked and (staging / RID / "sources" / "50%.tif").is_file()
    _assert_staged_as_source(tmp_path, staging)
