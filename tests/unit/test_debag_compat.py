"""Bags made by bdrc-bag and by bagit-python (md5/sha256/sha512, stored/deflated, odd names) all de-bag, and a
zip delivers exactly the works it is expected to hold (multi-work zips: each work named by the caller)."""

from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path

import bagit
import pytest

from harness.bags import (
    image_group,
    make_bdrc_bag_zip,
    make_bdrc_tool_zip,
    make_plain_work_zip,
    write_work_tree,
    zip_tree,
)
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import ControlCharacterName, MissingWork, UnexpectedWork

RID = "W1NLM4700"
SETTINGS = DebagSettings(workers=2, fsync=False)
ODD_NAMES = ("with space.txt", "ཀ་ཁ་ག unicode.txt", "percent%20%0Aname.txt", "100%.txt", "é-nfc.txt")


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


def _assert_same_payload(expected_tree: Path, work_dir: Path) -> None:
    expected = {p.relative_to(expected_tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in expected_tree.rglob("*") if p.is_file()}
    found = {p.relative_to(work_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in work_dir.rglob("*") if p.is_file() and f"{work_dir.name}.bag" not in p.parts}
    assert found == expected


def test_bag_made_by_bdrc_bag_debags(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_tool_zip(tmp_path, extra_names=("with space.txt",))
    result = debag_archive(zip_path, RID, staging, SETTINGS)
    work = result.works[0]
    assert (work.work_rid, work.bag, work.fixity_checked, work.algorithms) == (RID, True, True, ("sha512",))
    assert work.files == 4
    _assert_same_payload(tmp_path / "src" / RID, staging / RID)
    bag_dir = staging / RID / f"{RID}.bag"
    assert bagit._load_tag_file(str(bag_dir / "bag-info.txt"))["BDRC-RID"] == RID
    assert {p.name for p in bag_dir.iterdir()} >= {"bagit.txt", "bag-info.txt", "manifest-sha512.txt",
                                                   "tagmanifest-sha512.txt"}


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
@pytest.mark.parametrize("algorithms", [("md5",), ("sha256",), ("sha512",), ("md5", "sha256", "sha512")],
                         ids=["md5", "sha256", "sha512", "all"])
def test_bagit_python_bags_debag(tmp_path: Path, staging: Path, algorithms: tuple[str, ...],
                                 compression: int) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, algorithms=algorithms, compression=compression, extra_names=ODD_NAMES)
    work = debag_archive(zip_path, RID, staging, SETTINGS).works[0]
    assert sorted(work.algorithms) == sorted(algorithms)
    assert work.files == 3 + len(ODD_NAMES) and work.fixity_checked
    expected = write_work_tree(tmp_path / "expected", RID, extra_names=ODD_NAMES)
    _assert_same_payload(expected, staging / RID)


def test_literal_percent_0a_name_matches_although_bagit_decodes_it(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, extra_names=("line%0Abreak.txt",))
    with zipfile.ZipFile(zip_path) as zf:
        manifest = zf.read(f"{RID}.bag/manifest-sha256.txt").decode()
    assert "line%0Abreak.txt" in manifest
    debag_archive(zip_path, RID, staging, SETTINGS)
    assert (staging / RID / "sources" / "line%0Abreak.txt").is_file()


def test_several_bags_under_one_top_folder_each_become_a_work_when_each_is_expected(tmp_path: Path,
                                                                                    staging: Path) -> None:
    rids = ["W1NLM4700", "W22084", "W3CN27014_ABC"]
    zip_path = make_bdrc_bag_zip(tmp_path, rids=rids, top_folder="Archive0", compression=zipfile.ZIP_STORED)
    result = debag_archive(zip_path, RID, staging, SETTINGS, expected_rids=rids)
    assert [w.work_rid for w in result.works] == rids
    for rid in rids:
        assert (staging / rid / image_group(rid) / "images").is_dir()
        assert (staging / rid / f"{rid}.bag" / "manifest-sha256.txt").is_file()
        assert not (staging / rid / "data").exists()


def test_bag_at_the_zip_root_takes_the_message_rid(tmp_path: Path, staging: Path) -> None:
    work_dir = write_work_tree(tmp_path / "build", RID)
    bagit.make_bag(str(work_dir), processes=1, checksums=["sha256"])
    zip_path = tmp_path / "root.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(work_dir.rglob("*")):
            zf.write(path, arcname=path.relative_to(work_dir).as_posix())
    assert [w.work_rid for w in debag_archive(zip_path, RID, staging, SETTINGS).works] == [RID]
    assert (staging / RID / f"{RID}.bag" / "bagit.txt").is_file()


def test_multi_work_plain_zip_is_extracted_without_fixity_when_each_is_expected(tmp_path: Path,
                                                                                staging: Path) -> None:
    zip_path = make_plain_work_zip(tmp_path, rids=["W1NLM4700", "W22084"])
    result = debag_archive(zip_path, RID, staging, SETTINGS, expected_rids={"W1NLM4700", "W22084"})
    assert [w.work_rid for w in result.works] == ["W1NLM4700", "W22084"]
    for work in result.works:
        assert not work.bag and not work.fixity_checked and work.algorithms == ()
        assert any("no fixity available" in warning for warning in work.warnings)
        _assert_same_payload(write_work_tree(tmp_path / "expected", work.work_rid), staging / work.work_rid)


def test_plain_zip_of_a_work_folder_at_the_root_uses_the_message_rid(tmp_path: Path, staging: Path) -> None:
    work_dir = write_work_tree(tmp_path / "build", RID)
    zip_path = zip_tree(tmp_path / "root.zip", [(image_group(RID), work_dir / image_group(RID))])
    assert [w.work_rid for w in debag_archive(zip_path, RID, staging, SETTINGS).works] == [RID]
    assert (staging / RID / image_group(RID) / "images").is_dir()


def test_plain_work_found_by_its_archive_folder(tmp_path: Path, staging: Path) -> None:
    zip_path = tmp_path / "w.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("outer/W22084/archive/W22084-I1KG1/a.tif", b"a")
        zf.writestr("outer/W22084/eBooks/b.epub", b"b")
    assert [w.work_rid for w in debag_archive(zip_path, "W22084", staging, SETTINGS).works] == ["W22084"]
    assert (staging / "W22084" / "eBooks" / "b.epub").read_bytes() == b"b"


def test_name_with_a_real_newline_is_refused_although_bagit_encodes_it(tmp_path: Path, staging: Path) -> None:
    # bagit lists it as %0A; the zip's name guard refuses control characters in any member name
    zip_path = make_bdrc_bag_zip(tmp_path, extra_names=("new\nline.txt",))
    with zipfile.ZipFile(zip_path) as zf:
        assert "data/sources/new%0Aline.txt" in zf.read(f"{RID}.bag/manifest-sha256.txt").decode()
    with pytest.raises(ControlCharacterName):
        debag_archive(zip_path, RID, staging, SETTINGS)
    assert not (staging / RID).exists()


def test_empty_folders_and_folder_times_come_from_the_zip(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    empty = zipfile.ZipInfo(f"{RID}.bag/data/{RID}-I1KG1/empty/", date_time=(2001, 2, 3, 4, 5, 6))
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr(empty, b"")
    debag_archive(zip_path, RID, staging, SETTINGS)
    folder = staging / RID / f"{RID}-I1KG1" / "empty"
    assert folder.is_dir() and time.localtime(folder.stat().st_mtime)[:6] == (2001, 2, 3, 4, 5, 6)


def test_zip_holding_only_another_work_is_refused_and_nothing_is_staged(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, rids=["W22084"], zip_name=f"{RID}.bag.zip")
    with pytest.raises(UnexpectedWork, match=rf"^{RID}: {RID}\.bag\.zip holds W22084, not expected") as caught:
        debag_archive(zip_path, RID, staging, SETTINGS)
    assert caught.value.details == ["W22084"]
    assert list(staging.iterdir()) == []


def test_zip_holding_another_work_beside_its_own_is_refused(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, rids=[RID, "W22084"])
    with pytest.raises(UnexpectedWork, match=f"holds W22084, not expected .it holds {RID}, W22084; expected {RID}"):
        debag_archive(zip_path, RID, staging, SETTINGS)
    assert list(staging.iterdir()) == []


def test_plain_zip_of_another_work_is_refused(tmp_path: Path, staging: Path) -> None:
    plain = make_plain_work_zip(tmp_path, rids=["W22084"])
    with pytest.raises(UnexpectedWork, match="holds W22084, not expected"):
        debag_archive(plain.rename(plain.with_name(f"{RID}.zip")), RID, staging, SETTINGS)


def test_an_expected_work_missing_from_a_multi_work_zip_is_refused(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, rids=[RID])
    with pytest.raises(MissingWork, match=f"does not hold W22084 .it holds {RID}."):
        debag_archive(zip_path, RID, staging, SETTINGS, expected_rids=[RID, "W22084"])


def test_the_works_of_a_multi_work_zip_need_not_include_the_zip_names_rid(tmp_path: Path, staging: Path) -> None:
    # a hand-delivered zip named after none of its works: the operator names them all
    zip_path = make_bdrc_bag_zip(tmp_path, rids=["W22084", "W3CN27014_ABC"], zip_name="delivery.zip")
    result = debag_archive(zip_path, RID, staging, SETTINGS, expected_rids={"W22084", "W3CN27014_ABC"})
    assert [w.work_rid for w in result.works] == ["W22084", "W3CN27014_ABC"]
