"""BagIt rules bagit's parser lets through, each refused by the real de-bag with its named error.

Each bag is made by bagit-python, zipped, then changed in one way only: the tag manifests are refreshed
(``edit_tag_file``), so the refusal comes from the rule under test and not from a tag-file checksum.
"""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

import pytest

from harness.bags import make_bdrc_bag_zip, make_plain_work_zip
from harness.zip_edits import edit_tag_file, read_members, rewrite_zip
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import (
    BagDeclarationInvalid,
    BagRidMismatch,
    NoBagInZip,
    TagFileUndecodable,
    TagManifestIncomplete,
    UnsafeManifestPath,
)

RID = "W1NLM4700"
SETTINGS = DebagSettings(workers=2, fsync=False)
BAG = f"{RID}.bag"


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


def _refused(zip_path: Path, staging: Path, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as caught:
        debag_archive(zip_path, RID, staging, SETTINGS)
    assert type(caught.value) is error and str(caught.value).startswith(f"{RID}: ")
    assert not (staging / RID).exists()


def _first_line(content: bytes) -> bytes:
    return content.splitlines(keepends=True)[0]


def test_bagit_txt_with_a_byte_order_mark_is_refused(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bagit.txt", lambda c: codecs.BOM_UTF8 + c)
    _refused(zip_path, staging, BagDeclarationInvalid, "bagit.txt starts with a byte-order mark")


@pytest.mark.parametrize("line", [b"BagIt-Version: 0.97 \n", b" BagIt-Version: 0.97\n", b"BagIt-Version:  0.97\n"],
                         ids=["trailing", "leading", "inside"])
def test_bagit_txt_with_whitespace_around_the_version_is_refused(tmp_path: Path, staging: Path,
                                                                 line: bytes) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bagit.txt", lambda c: c.replace(_first_line(c), line))
    _refused(zip_path, staging, BagDeclarationInvalid, "bagit.txt line 1")


def test_bagit_txt_with_a_malformed_version_is_refused(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bagit.txt", lambda c: c.replace(b"0.97", b"1"))
    _refused(zip_path, staging, BagDeclarationInvalid, "BagIt-Version '1'")


def test_latin1_bytes_in_a_utf8_bag_info_are_refused_naming_the_file(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bag-info.txt", lambda c: c + "Contact-Name: Chödrön\n".encode("latin-1"))
    _refused(zip_path, staging, TagFileUndecodable, r"bag-info\.txt does not decode as UTF-8")


def test_latin1_bytes_in_a_utf8_manifest_are_refused_naming_the_file(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/manifest-sha256.txt", lambda c: c + b"# caf\xe9\n")
    _refused(zip_path, staging, TagFileUndecodable, r"manifest-sha256\.txt does not decode as UTF-8")


def test_unknown_tag_file_encoding_is_refused(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bagit.txt", lambda c: c.replace(b"UTF-8", b"x-no-such-encoding"))
    _refused(zip_path, staging, TagFileUndecodable, "unknown Tag-File-Character-Encoding 'x-no-such-encoding'")


def test_a_wrong_declared_encoding_is_refused_where_it_fails(tmp_path: Path, staging: Path) -> None:
    # UTF-16 declared, UTF-8 written: the first tag file read in it cannot be decoded
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bagit.txt", lambda c: c.replace(b"UTF-8", b"UTF-16"))
    _refused(zip_path, staging, TagFileUndecodable, r"does not decode as UTF-16")


@pytest.mark.parametrize("path", [b"data/../bag-info.txt", b"data/./x.tif", b"./data/x.tif", b"data//x.tif"],
                         ids=["dotdot-into-tags", "dot", "leading-dot", "double-slash"])
def test_a_manifest_path_that_is_not_normalized_is_refused(tmp_path: Path, staging: Path, path: bytes) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/manifest-sha256.txt", lambda c: c + b"0" * 64 + b"  " + path + b"\n")
    _refused(zip_path, staging, UnsafeManifestPath, "not a normalized path")


def test_a_payload_manifest_listing_a_tag_file_is_refused(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    with_digest = {i.filename: c for i, c in read_members(zip_path)}[f"{BAG}/tagmanifest-sha256.txt"]
    bag_info_line = next(line for line in with_digest.splitlines() if line.endswith(b"bag-info.txt"))
    edit_tag_file(zip_path, f"{BAG}/manifest-sha256.txt", lambda c: c + bag_info_line + b"\n")
    _refused(zip_path, staging, UnsafeManifestPath, "outside data/")


@pytest.mark.parametrize("dropped", ["manifest-sha256.txt", "bagit.txt", "bag-info.txt"])
def test_a_tag_manifest_not_covering_a_declaration_or_manifest_is_refused(tmp_path: Path, staging: Path,
                                                                          dropped: str) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/tagmanifest-sha256.txt",
                  lambda c: b"".join(line for line in c.splitlines(keepends=True)
                                     if not line.rstrip().endswith(f" {dropped}".encode())))
    _refused(zip_path, staging, TagManifestIncomplete, f"tagmanifest-sha256.txt does not list {dropped}")


def test_bdrc_rid_disagreeing_with_the_bag_is_refused(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bag-info.txt",
                  lambda c: c.replace(f"BDRC-RID: {RID}".encode(), b"BDRC-RID: W22084"))
    _refused(zip_path, staging, BagRidMismatch, "declares BDRC-RID 'W22084'")


def test_bdrc_rid_repeated_with_another_value_is_refused(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bag-info.txt", lambda c: c + b"BDRC-RID: W22084\n")
    _refused(zip_path, staging, BagRidMismatch, "declares BDRC-RID 'W22084'")


def test_a_bag_without_bdrc_rid_is_taken(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bag-info.txt",
                  lambda c: b"".join(line for line in c.splitlines(keepends=True) if not line.startswith(b"BDRC-RID")))
    assert [w.work_rid for w in debag_archive(zip_path, RID, staging, SETTINGS).works] == [RID]


def test_a_bag_zip_without_a_bag_is_refused_although_plain_zips_are_allowed(tmp_path: Path, staging: Path) -> None:
    plain = make_plain_work_zip(tmp_path)
    zip_path = plain.rename(plain.with_name(f"{RID}.bag.zip"))
    assert SETTINGS.allow_plain_zip
    _refused(zip_path, staging, NoBagInZip, rf"{RID}\.bag\.zip holds no bag")


def test_the_same_plain_zip_named_rid_zip_is_taken_without_fixity(tmp_path: Path, staging: Path) -> None:
    work = debag_archive(make_plain_work_zip(tmp_path), RID, staging, SETTINGS).works[0]
    assert (work.work_rid, work.bag, work.fixity_checked) == (RID, False, False)


def test_a_plain_zip_is_refused_by_name_when_plain_zips_are_off(tmp_path: Path, staging: Path) -> None:
    with pytest.raises(NoBagInZip, match=rf"{RID}\.zip holds no bag"):
        debag_archive(make_plain_work_zip(tmp_path), RID, staging, DebagSettings(allow_plain_zip=False, fsync=False))


def test_a_bagit_txt_in_crlf_is_taken(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bagit.txt", lambda c: c.replace(b"\n", b"\r\n"))
    assert debag_archive(zip_path, RID, staging, SETTINGS).works[0].fixity_checked


def test_edit_tag_file_refreshes_the_tag_manifest_digest(tmp_path: Path) -> None:
    # the helper the rule tests rest on: a refreshed tag manifest lists the edited file's new digest
    zip_path = make_bdrc_bag_zip(tmp_path)
    edit_tag_file(zip_path, f"{BAG}/bag-info.txt", lambda c: c + b"Contact-Name: someone\n")
    members = {i.filename: c for i, c in read_members(zip_path)}
    digest = hashlib.sha256(members[f"{BAG}/bag-info.txt"]).hexdigest().encode()
    assert digest + b" bag-info.txt" in members[f"{BAG}/tagmanifest-sha256.txt"]
    rewrite_zip(zip_path, read_members(zip_path))
    assert {i.filename for i, _ in read_members(zip_path)} == set(members)
