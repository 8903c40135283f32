"""Each zip safety rule: a real zip that breaks it, the named error, and nothing in the final layout."""

from __future__ import annotations

import stat
import unicodedata
import warnings
import zipfile
from pathlib import Path

import pytest

from onprem.finisher.debag import debag_archive
from onprem.finisher.debag_model import DebagSettings
from onprem.finisher.errors import (
    CorruptArchive,
    DuplicateMember,
    NonUtf8MemberName,
    OverlappingMembers,
    SymlinkMember,
    UnsafeArchive,
    UnsafeMemberPath,
    ZipBomb,
)
from onprem.finisher.zip_safety import SafeMember, SizeGuard, guard_member
from tests.fixtures.bags import corrupt_one_byte, make_bdrc_bag_zip, truncate_zip, zip_entries

RID = "W1NLM4700"
SETTINGS = DebagSettings(workers=2, fsync=False)


def _debag_fails(tmp_path: Path, zip_path: Path, error: type[Exception], settings: DebagSettings = SETTINGS) -> str:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    with pytest.raises(error) as caught:
        debag_archive(zip_path, RID, staging, settings)
    assert not (staging / RID).exists()
    assert str(caught.value).startswith(f"{RID}: ")
    return str(caught.value)


@pytest.mark.parametrize("name", ["/etc/passwd", "W1.bag/../../escape.txt", "W1.bag/data/../../x",
                                  "a\\..\\b.txt", "C:/Windows/x.txt", "c:x.txt", "W1.bag//data/x", "./x"])
def test_unsafe_member_paths_are_rejected(tmp_path: Path, name: str) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [(name, b"x")])
    assert name.split("/")[-1] in _debag_fails(tmp_path, zip_path, UnsafeMemberPath) or "\\" in name


def test_symlink_member_is_rejected(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("W1NLM4700/images/link.tif")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zip_path = zip_entries(tmp_path / "w.zip", [(link, b"/etc/passwd")])
    assert "symlink" in _debag_fails(tmp_path, zip_path, SymlinkMember)


def test_special_file_member_is_rejected(tmp_path: Path) -> None:
    fifo = zipfile.ZipInfo("W1NLM4700/images/fifo")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    zip_path = zip_entries(tmp_path / "w.zip", [(fifo, b"")])
    _debag_fails(tmp_path, zip_path, SymlinkMember)


def test_duplicate_member_names_are_rejected(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate it writes
        zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/a.tif", b"1"),
                                                    ("W1NLM4700/images/a.tif", b"2")])
    _debag_fails(tmp_path, zip_path, DuplicateMember)


def test_names_equal_after_unicode_normalization_are_duplicates(tmp_path: Path) -> None:
    nfc, nfd = unicodedata.normalize("NFC", "é.tif"), unicodedata.normalize("NFD", "é.tif")
    zip_path = zip_entries(tmp_path / "w.zip", [(f"W1NLM4700/images/{nfc}", b"1"),
                                                (f"W1NLM4700/images/{nfd}", b"2")])
    _debag_fails(tmp_path, zip_path, DuplicateMember)


def test_file_and_folder_of_the_same_name_are_duplicates(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images", b"1"), ("W1NLM4700/images/a.tif", b"2")])
    _debag_fails(tmp_path, zip_path, DuplicateMember)


def test_member_declaring_more_than_the_limit_is_a_bomb(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/a.tif", b"x" * 5000)])
    message = _debag_fails(tmp_path, zip_path, ZipBomb, DebagSettings(max_member_bytes=4096, fsync=False))
    assert "5000 bytes" in message


def test_total_declared_size_over_the_limit_is_a_bomb(tmp_path: Path) -> None:
    entries = [(f"W1NLM4700/images/{i}.tif", b"x" * 1000) for i in range(5)]
    zip_path = zip_entries(tmp_path / "w.zip", entries)
    _debag_fails(tmp_path, zip_path, ZipBomb, DebagSettings(max_total_bytes=4000, fsync=False))


def test_compression_ratio_of_a_bomb_is_rejected(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/zeros.tif", bytes(4 * 2**20))],
                           compression=zipfile.ZIP_DEFLATED)
    assert "compression ratio" in _debag_fails(tmp_path, zip_path, ZipBomb)


def test_actual_bytes_past_the_declared_size_are_a_bomb() -> None:
    info = zipfile.ZipInfo("W1NLM4700/images/a.tif")
    info.file_size = 10
    guard = SizeGuard(SafeMember(info, Path(info.filename), False), RID, SETTINGS)  # type: ignore[arg-type]
    guard.add(10)
    with pytest.raises(ZipBomb, match="inflates past 10 bytes"):
        guard.add(1)


def test_overlapping_entries_are_rejected(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/a.tif", b"a" * 100),
                                                ("W1NLM4700/images/b.tif", b"b" * 100)])
    raw = bytearray(zip_path.read_bytes())
    central_b = raw.rfind(b"PK\x01\x02")  # the last central-directory entry is b.tif
    raw[central_b + 42:central_b + 46] = (0).to_bytes(4, "little")  # point it at a.tif's local header
    zip_path.write_bytes(bytes(raw))
    _debag_fails(tmp_path, zip_path, OverlappingMembers)


def test_non_ascii_name_without_the_utf8_flag_is_rejected(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/cafX.tif", b"x")])
    zip_path.write_bytes(zip_path.read_bytes().replace(b"cafX", b"caf\x82"))
    assert "bit 11" in _debag_fails(tmp_path, zip_path, NonUtf8MemberName)


def test_utf8_flagged_names_are_accepted() -> None:
    info = zipfile.ZipInfo("W1NLM4700/sources/བོད.txt")
    info.flag_bits |= 0x800
    assert guard_member(info, RID, SETTINGS).path.name == "བོད.txt"


def test_truncated_zip_is_a_corrupt_archive(tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    truncate_zip(zip_path, zip_path.stat().st_size // 2)
    _debag_fails(tmp_path, zip_path, CorruptArchive)


def test_bad_crc_is_a_corrupt_archive_naming_the_member(tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, compression=zipfile.ZIP_STORED)
    member = f"{RID}.bag/data/{RID}-I1KG1/images/{RID}-I1KG1_0002.tif"
    corrupt_one_byte(zip_path, member, offset=100)
    message = _debag_fails(tmp_path, zip_path, CorruptArchive)
    assert member in message and "CRC" in message


def test_corrupt_deflate_stream_is_a_corrupt_archive(tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, compression=zipfile.ZIP_DEFLATED)
    member = f"{RID}.bag/data/{RID}-I1KG1/images/{RID}-I1KG1_0001.tif"
    corrupt_one_byte(zip_path, member, offset=10)
    assert member in _debag_fails(tmp_path, zip_path, CorruptArchive)


def test_every_safety_error_is_an_unsafe_archive() -> None:
    for error in (UnsafeMemberPath, SymlinkMember, DuplicateMember, ZipBomb, OverlappingMembers, NonUtf8MemberName):
        assert issubclass(error, UnsafeArchive)
