"""Each zip safety rule: a real zip that breaks it (zipfile, Info-ZIP ``zip``, 7-Zip), the named error, and nothing
in the final layout; macOS junk outside the bag ignored. The bomb limits are in test_zip_budget.py."""

from __future__ import annotations

import logging
import shutil
import stat
import subprocess
import unicodedata
import warnings
import zipfile
from pathlib import Path

import pytest

from harness.bags import make_bdrc_bag_zip, zip_entries
from harness.zip_edits import add_member, corrupt_one_byte, truncate_zip
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.budget import InflateBudget, SizeGuard
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.safety import guard_member
from onprem.finisher.errors import (
    BagIncomplete,
    CaseCollision,
    ControlCharacterName,
    CorruptArchive,
    DuplicateMember,
    EncryptedMember,
    MemberNameTooLong,
    NonUtf8MemberName,
    OverlappingMembers,
    SymlinkMember,
    UnsafeArchive,
    UnsafeMemberPath,
    UnsupportedCompression,
    ZipBomb,
)

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


def test_actual_bytes_past_the_declared_size_are_a_bomb() -> None:
    info = zipfile.ZipInfo("W1NLM4700/images/a.tif")
    info.file_size = 10
    guard = SizeGuard(info.filename, info, RID, SETTINGS, InflateBudget(RID, SETTINGS))
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
    for error in (UnsafeMemberPath, SymlinkMember, DuplicateMember, ZipBomb, OverlappingMembers, NonUtf8MemberName,
                  ControlCharacterName, MemberNameTooLong, CaseCollision, EncryptedMember, UnsupportedCompression):
        assert issubclass(error, UnsafeArchive)


# --- names: encodings, NUL and control characters, lengths, case twins --------------------------------------
def _renamed(zip_path: Path, placeholder: str, raw: bytes) -> Path:
    """``zip_path`` with a member name's bytes replaced in its local header and its central-directory entry."""
    data = zip_path.read_bytes()
    assert data.count(placeholder.encode()) == 2 and len(placeholder.encode()) == len(raw)
    zip_path.write_bytes(data.replace(placeholder.encode(), raw))
    return zip_path


def _unflagged(name: str, create_system: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = create_system
    return info


def test_unflagged_utf8_name_made_on_unix_is_read_as_utf8() -> None:
    raw = "W1NLM4700/images/བོད་ཡིག.tif".encode()
    info = _unflagged(raw.decode("cp437"), 3)  # what zipfile makes of Info-ZIP's unflagged bytes
    member = guard_member(info, RID, SETTINGS)
    assert member.name == "W1NLM4700/images/བོད་ཡིག.tif" and member.path.name == "བོད་ཡིག.tif"


def test_unflagged_utf8_name_made_elsewhere_is_refused() -> None:
    info = _unflagged("W1NLM4700/images/བོད.tif".encode().decode("cp437"), 0)  # MS-DOS: an OEM code page
    with pytest.raises(NonUtf8MemberName, match="not UTF-8 written on Unix"):
        guard_member(info, RID, SETTINGS)


def test_unflagged_name_on_unix_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [(_unflagged("W1NLM4700/images/cafX.tif", 3), b"x")])
    _renamed(zip_path, "cafX", b"caf\xe9")  # Latin-1 bytes: not UTF-8
    assert "caf\\xe9" in _debag_fails(tmp_path, zip_path, NonUtf8MemberName)


def test_flagged_name_that_is_not_utf8_is_named_not_a_crash(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("W1NLM4700/images/cafX.tif")
    info.flag_bits |= 0x800
    zip_path = _renamed(zip_entries(tmp_path / "w.zip", [(info, b"x")]), "cafX", b"caf\xff")
    assert "bit 11" in _debag_fails(tmp_path, zip_path, NonUtf8MemberName)


def test_nul_in_the_raw_name_is_refused_although_zipfile_cuts_the_name_there(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/a.tifXYZ.txt", b"x")])
    _renamed(zip_path, "a.tifXYZ.txt", b"a.tif\x00/../xy")
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.infolist()[0].filename == "W1NLM4700/images/a.tif", "zipfile hides what follows the NUL"
    assert "NUL" in _debag_fails(tmp_path, zip_path, UnsafeMemberPath)


@pytest.mark.parametrize("char", ["\n", "\r", "\x1b", "\x7f", "\x85"], ids=["LF", "CR", "ESC", "DEL", "NEL"])
def test_control_characters_in_a_name_are_refused(tmp_path: Path, char: str) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [(f"W1NLM4700/images/a{char}b.tif", b"x")])
    assert repr(char)[1:-1] in _debag_fails(tmp_path, zip_path, ControlCharacterName)


def test_a_component_over_255_bytes_is_named_not_an_os_error(tmp_path: Path) -> None:
    long_name = "ཀ" * 86 + ".tif"  # 86 * 3 bytes + 4 = 262 bytes, 90 characters
    zip_path = zip_entries(tmp_path / "w.zip", [(f"W1NLM4700/images/{long_name}", b"x")])
    assert "262 bytes (limit 255)" in _debag_fails(tmp_path, zip_path, MemberNameTooLong)


def test_a_component_of_255_bytes_is_taken(tmp_path: Path) -> None:
    name = "a" * 251 + ".tif"
    zip_path = zip_entries(tmp_path / "w.zip", [(f"W1NLM4700/images/{name}", b"x")])
    staging = tmp_path / "staging"
    staging.mkdir()
    debag_archive(zip_path, RID, staging, SETTINGS)
    assert (staging / RID / "images" / name).read_bytes() == b"x"


def test_a_path_past_the_path_limit_is_named(tmp_path: Path) -> None:
    deep = "/".join(["d" * 200] * 20)  # 4,020 bytes: under staging it would pass PATH_MAX
    zip_path = zip_entries(tmp_path / "w.zip", [(f"W1NLM4700/images/{deep}/a.tif", b"x")])
    assert "limit 3584" in _debag_fails(tmp_path, zip_path, MemberNameTooLong)


def test_names_differing_only_by_case_are_refused(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/Page.tif", b"1"),
                                                ("W1NLM4700/images/page.TIF", b"2")])
    assert "differ only by case" in _debag_fails(tmp_path, zip_path, CaseCollision)


def test_folders_differing_only_by_case_are_refused(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/a.tif", b"1"),
                                                ("W1NLM4700/Images/b.tif", b"2")])
    assert "'W1NLM4700/Images' and 'W1NLM4700/images'" in _debag_fails(tmp_path, zip_path, CaseCollision)


def test_case_folding_covers_more_than_ascii(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/straße.tif", b"1"),
                                                ("W1NLM4700/images/STRASSE.tif", b"2")])
    _debag_fails(tmp_path, zip_path, CaseCollision)


def test_a_case_collision_is_a_duplicate_member() -> None:
    assert issubclass(CaseCollision, DuplicateMember) and CaseCollision.cause != DuplicateMember.cause


# --- members that cannot be read: encrypted, other compression methods -----------------------------------
def test_encrypted_member_is_refused_by_name_before_extraction(tmp_path: Path) -> None:
    (tmp_path / "src" / "W1NLM4700" / "images").mkdir(parents=True)
    (tmp_path / "src" / "W1NLM4700" / "images" / "a.tif").write_bytes(b"II*\x00" * 100)
    subprocess.run(["zip", "-q", "-r", "-P", "secret", str(tmp_path / "w.zip"), "W1NLM4700"],
                   cwd=tmp_path / "src", check=True)
    assert "encrypted" in _debag_fails(tmp_path, tmp_path / "w.zip", EncryptedMember)
    assert not list((tmp_path / "staging").rglob("a.tif")), "not a byte extracted"


def test_bzip2_member_is_an_unsupported_compression_not_a_corrupt_zip(tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "w.zip", [("W1NLM4700/images/a.tif", b"page " * 1000)],
                           compression=zipfile.ZIP_BZIP2)
    assert "method 12 (bzip2)" in _debag_fails(tmp_path, zip_path, UnsupportedCompression)


def test_deflate64_from_7zip_is_an_unsupported_compression(tmp_path: Path) -> None:
    assert shutil.which("7z"), "7-Zip (p7zip-full) is a Debian package of the Makefile"
    (tmp_path / "src" / "W1NLM4700" / "images").mkdir(parents=True)
    (tmp_path / "src" / "W1NLM4700" / "images" / "a.txt").write_text("བོད་ཡིག " * 5000, encoding="utf-8")
    subprocess.run(["7z", "a", "-bd", "-tzip", "-mm=Deflate64", str(tmp_path / "w.zip"), "W1NLM4700"],
                   cwd=tmp_path / "src", check=True, capture_output=True)
    assert "method 9 (Deflate64)" in _debag_fails(tmp_path, tmp_path / "w.zip", UnsupportedCompression)


# --- macOS junk -----------------------------------------------------------------------------------------
def test_macos_junk_outside_the_bag_is_ignored_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    add_member(zip_path, ".DS_Store", b"\x00\x00\x00\x01Bud1")
    add_member(zip_path, f"__MACOSX/{RID}.bag/._bagit.txt", b"\x00\x05\x16\x07AppleDouble")
    add_member(zip_path, "__MACOSX/._caf\udce9.txt".encode("utf-8", "surrogateescape").decode("cp437"), b"x")
    staging = tmp_path / "staging"
    staging.mkdir()
    with caplog.at_level(logging.INFO):
        work = debag_archive(zip_path, RID, staging, SETTINGS).works[0]
    assert work.fixity_checked
    for junk in ("._*", ".DS_Store", "__MACOSX"):
        assert not list(staging.rglob(junk)), junk
    logged = [r for r in caplog.records if "macOS entries ignored" in r.getMessage()]
    assert len(logged) == 1 and logged[0].work_rid == RID and "3 macOS entries" in logged[0].getMessage()


def test_ds_store_in_the_payload_is_an_unlisted_file(tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    add_member(zip_path, f"{RID}.bag/data/{RID}-I1KG1/.DS_Store", b"\x00\x00\x00\x01Bud1")
    assert ".DS_Store" in _debag_fails(tmp_path, zip_path, BagIncomplete)
