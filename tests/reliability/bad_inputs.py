"""The bad restored objects of the reliability suite: each builder writes one real zip that breaks one rule.

    case = BAD_ZIPS["zip_slip_dotdot"]
    zip_path = case.build(tmp_path, "W9BAD01")   # a zip named W9BAD01.bag.zip holding W9BAD01.bag/…
    case.error                                   # the named error the finisher must raise (UnsafeMemberPath)

Every case gets its own RID so that many of them can go through one finisher drain side by side. The de-bag
unit tests (tests/unit/test_debag*.py, test_zip_safety.py) cover each rule in depth; here the same inputs travel
the whole way (message → fetch → de-bag) and the suite checks where they end up. ``BAD_ZIPS`` holds the cases
of this module and those of each ``bad_inputs_*.py`` beside it.
"""

from __future__ import annotations

import stat
import unicodedata
import zipfile
from pathlib import Path

import bagit

from harness.zip_edits import add_member, corrupt_one_byte, drop_member, tamper_member, truncate_zip
from onprem.finisher.errors import (
    BagIncomplete,
    BagInvalid,
    ChecksumMismatch,
    CorruptArchive,
    DuplicateMember,
    FetchFileRejected,
    MissingTagManifest,
    NoBagInZip,
    NonUtf8MemberName,
    OverlappingMembers,
    SymlinkMember,
    UnsafeManifestPath,
    UnsafeMemberPath,
    WeakChecksums,
    ZipBomb,
)
from tests.reliability.bad_inputs_bags import CASES as BAG_CASES
from tests.reliability.bad_inputs_names import CASES as NAME_CASES
from tests.reliability.bad_zip import BadZip, edit_member, good_zip, payload_member, with_member

__all__ = ["BAD_ZIPS", "BadZip", "good_zip", "payload_member", "unicode_names_zip"]
def _symlink(tmp: Path, rid: str) -> Path:
    link = zipfile.ZipInfo(f"{rid}.bag/data/{rid}-I1KG1/images/link.tif")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return with_member(link, b"/etc/passwd")(tmp, rid)


def _duplicate(tmp: Path, rid: str) -> Path:
    return with_member(payload_member(rid, 1), b"a second copy")(tmp, rid)


def _nfc_nfd_twins(tmp: Path, rid: str) -> Path:
    """Two names equal after Unicode normalization (zipfile flags non-ASCII names UTF-8 by itself)."""
    zip_path = good_zip(tmp, rid)
    for form in ("NFC", "NFD"):
        add_member(zip_path, f"{rid}.bag/data/sources/" + unicodedata.normalize(form, "བོད་é.txt"), form.encode())
    return zip_path


def _bomb_ratio(tmp: Path, rid: str) -> Path:
    """80 members of zeros under 1 MiB each (~80 KiB of zip): the whole zip's ratio stops them past 64 MiB (one
    4 MiB blank page, deflated ~1028:1, is a valid scan and taken)."""
    zip_path = good_zip(tmp, rid)
    with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        for n in range(80):
            zf.writestr(f"{rid}.bag/data/zeros-{n:02d}.tif", bytes(2**20 - 1))
    return zip_path


def _bomb_declared(tmp: Path, rid: str) -> Path:
    """A member whose central-directory entry declares 4 GiB for a few compressed bytes."""
    zip_path = with_member(f"{{rid}}.bag/data/{rid}-huge.tif", b"tiny")(tmp, rid)
    raw = bytearray(zip_path.read_bytes())
    entry = raw.rfind(b"PK\x01\x02")  # the last central-directory entry is the member just added
    raw[entry + 24:entry + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    zip_path.write_bytes(bytes(raw))
    return zip_path


def _overlapping(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    raw = bytearray(zip_path.read_bytes())
    last, first = raw.rfind(b"PK\x01\x02"), raw.find(b"PK\x01\x02")
    offset_of_first = raw[first + 42:first + 46]
    raw[last + 42:last + 46] = offset_of_first  # two entries now share the first member's bytes
    zip_path.write_bytes(bytes(raw))
    return zip_path


def _truncated(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    truncate_zip(zip_path, zip_path.stat().st_size * 2 // 3)
    return zip_path


def _bad_crc(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    corrupt_one_byte(zip_path, payload_member(rid, 2), offset=100)
    return zip_path


def _flipped_byte(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    tamper_member(zip_path, payload_member(rid, 2), offset=7)
    return zip_path


def _missing_payload(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    drop_member(zip_path, payload_member(rid, 2))
    return zip_path


def _missing_tagmanifest(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    drop_member(zip_path, f"{rid}.bag/tagmanifest-sha256.txt")
    return zip_path


def _edited_tag_file(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    edit_member(zip_path, f"{rid}.bag/bag-info.txt", lambda c: c + b"Contact-Name: someone else\n")
    return zip_path


def _manifest_escape(tmp: Path, rid: str) -> Path:
    zip_path = good_zip(tmp, rid)
    edit_member(zip_path, f"{rid}.bag/manifest-sha256.txt", lambda c: c + b"0" * 64 + b"  data/../../../etc/passwd\n")
    return zip_path


def _md5_only(tmp: Path, rid: str) -> Path:
    return good_zip(tmp, rid, algorithms=("md5",))


def _non_utf8_name(tmp: Path, rid: str) -> Path:
    zip_path = with_member(f"{{rid}}.bag/data/{rid}-cafX.txt", b"x")(tmp, rid)
    zip_path.write_bytes(zip_path.read_bytes().replace(b"cafX", b"caf\x82"))
    return zip_path


def _empty_bag(tmp: Path, rid: str) -> Path:
    bag_dir = tmp / rid / "empty" / rid
    bag_dir.mkdir(parents=True)
    bagit.make_bag(str(bag_dir), {"BDRC-RID": rid}, checksums=["sha256"])
    zip_path = tmp / rid / f"{rid}.bag.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(bag_dir.rglob("*")):
            zf.write(path, arcname=f"{rid}.bag/{path.relative_to(bag_dir).as_posix()}")
    return zip_path


def _no_bag(tmp: Path, rid: str) -> Path:
    zip_path = tmp / rid / f"{rid}.bag.zip"
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("notes/readme.txt", "no bag and no work folder here")
    return zip_path


#: the first set of bad zips, by name (the test ids)
_CASES: dict[str, BadZip] = {case.name: case for case in (
    BadZip("zip_slip_dotdot", with_member("{rid}.bag/../../escape.txt"), UnsafeMemberPath),
    BadZip("zip_slip_absolute", with_member("/tmp/escape.txt"), UnsafeMemberPath),
    BadZip("zip_slip_backslash", with_member("{rid}.bag\\..\\..\\escape.txt"), UnsafeMemberPath),
    BadZip("zip_slip_drive_letter", with_member("C:/Windows/escape.txt"), UnsafeMemberPath),
    BadZip("symlink_member", _symlink, SymlinkMember),
    BadZip("duplicate_names", _duplicate, DuplicateMember),
    BadZip("unicode_nfc_nfd_twins", _nfc_nfd_twins, DuplicateMember),
    BadZip("zip_bomb_ratio", _bomb_ratio, ZipBomb),
    BadZip("zip_bomb_declared_size", _bomb_declared, ZipBomb),
    BadZip("overlapping_entries", _overlapping, OverlappingMembers),
    BadZip("truncated_zip", _truncated, CorruptArchive),
    BadZip("bad_crc", _bad_crc, CorruptArchive),
    BadZip("flipped_payload_byte", _flipped_byte, ChecksumMismatch),
    BadZip("missing_payload_file", _missing_payload, BagIncomplete),
    BadZip("extra_payload_file", with_member("{rid}.bag/data/extra.txt", b"in no manifest"), BagIncomplete),
    BadZip("missing_tag_manifest", _missing_tagmanifest, MissingTagManifest),
    BadZip("edited_tag_file", _edited_tag_file, ChecksumMismatch),
    BadZip("fetch_txt", with_member("{rid}.bag/fetch.txt", b"https://example.org/x 10 data/x\n"),
           FetchFileRejected),
    BadZip("manifest_path_escapes_bag", _manifest_escape, UnsafeManifestPath),
    BadZip("md5_only_under_sha256_policy", _md5_only, WeakChecksums, strong_checksums=True),
    BadZip("non_utf8_name", _non_utf8_name, NonUtf8MemberName),
    BadZip("empty_bag", _empty_bag, BagInvalid),
    BadZip("zip_without_bag", _no_bag, NoBagInZip),
)}

#: every bad zip, by name (the test ids): this module's and those of each ``bad_inputs_*.py``
BAD_ZIPS: dict[str, BadZip] = {**_CASES, **NAME_CASES, **BAG_CASES}


def unicode_names_zip(tmp: Path, rid: str) -> tuple[Path, list[str]]:
    """A valid bag whose payload has Tibetan, accented and CJK names (UTF-8 flagged): it must go through intact."""
    folder = tmp / rid
    work = folder / "src" / rid
    names = ["བོད་ཡིག.txt", "café.txt", "漢字.txt"]
    images = work / f"{rid}-I1KG1" / "images"
    images.mkdir(parents=True)
    (images / f"{rid}-I1KG1_0001.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    for name in names:
        (work / "sources").mkdir(exist_ok=True)
        (work / "sources" / name).write_text(f"{name}\n", encoding="utf-8")
    bagit.make_bag(str(work), {"BDRC-RID": rid}, checksums=["sha256"])
    zip_path = folder / f"{rid}.bag.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(work.rglob("*")):
            zf.write(path, arcname=f"{rid}.bag/{path.relative_to(work).as_posix()}")
    return zip_path, [f"sources/{name}" for name in names]
