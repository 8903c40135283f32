"""Bad zips of the zip container (see bad_zip.py): member names, members no path can read, bombs; gathered into
``bad_inputs.BAD_ZIPS``. Real tools where a tool makes the case (Info-ZIP ``zip -P``, 7-Zip's Deflate64 and
``-p``), else zipfile and patched name bytes (a NUL, invalid UTF-8 flagged UTF-8)."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from onprem.finisher.errors import (
    BagIncomplete,
    CaseCollision,
    ControlCharacterName,
    EncryptedMember,
    MemberNameTooLong,
    NonUtf8MemberName,
    UnsafeMemberPath,
    UnsupportedCompression,
    ZipBomb,
)
from tests.reliability.bad_zip import BadZip, good_zip, payload_member, with_member
from tests.reliability.real_zips import DS_STORE, info_zip_bag, seven_zip_bag

_PLACEHOLDER = "PLACEHOLDER"


def _raw_name(raw: bytes, *, flag_bits: int = 0, create_system: int = 3) -> Callable[[Path, str], Path]:
    """A payload member whose name ends in ``raw`` bytes (patched in its local header and central directory)."""
    def build(tmp: Path, rid: str) -> Path:
        placeholder = _PLACEHOLDER + "x" * (len(raw) - len(_PLACEHOLDER))
        info = zipfile.ZipInfo(f"{rid}.bag/data/{placeholder}")
        info.flag_bits |= flag_bits
        info.create_system = create_system
        zip_path = with_member(info, b"named in raw bytes")(tmp, rid)
        data = zip_path.read_bytes()
        assert data.count(placeholder.encode()) == 2 and len(placeholder) == len(raw)
        zip_path.write_bytes(data.replace(placeholder.encode(), raw))
        return zip_path

    return build


def _case_twins(tmp: Path, rid: str) -> Path:
    return with_member(payload_member(rid, 1).replace(".tif", ".TIF"), b"the same page, in capitals")(tmp, rid)


def _long_component(tmp: Path, rid: str) -> Path:
    return with_member(f"{{rid}}.bag/data/sources/{'ཀ' * 86}.txt")(tmp, rid)  # 262 bytes, 90 characters


def _long_path(tmp: Path, rid: str) -> Path:
    deep = "/".join(["ཀཁགང" * 16] * 22)  # 22 folders of 192 bytes: 4,246 bytes, past PATH_MAX under staging
    return with_member(f"{{rid}}.bag/data/{deep}/page.tif")(tmp, rid)


def _declared_ratio(tmp: Path, rid: str) -> Path:
    """A blank page (real deflate, ~1028:1) whose headers then declare twice its size: a ratio only a lie has."""
    zip_path = good_zip(tmp, rid)
    with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{rid}.bag/data/blank.tif", bytes(4 * 2**20))
        local = zf.getinfo(f"{rid}.bag/data/blank.tif").header_offset
    raw = bytearray(zip_path.read_bytes())
    entry = raw.rfind(b"PK\x01\x02")  # the last central-directory entry is the member just added
    struct.pack_into("<I", raw, entry + 24, 8 * 2**20)
    struct.pack_into("<I", raw, local + 22, 8 * 2**20)
    zip_path.write_bytes(bytes(raw))
    return zip_path


def _too_many_entries(tmp: Path, rid: str) -> Path:
    """100,001 entries (the default limit is 100,000): folders, so that building and refusing it stay quick."""
    zip_path = good_zip(tmp, rid)
    with zipfile.ZipFile(zip_path, "a") as zf:
        for n in range(100_001 - len(zf.infolist())):
            zf.writestr(f"{rid}.bag/data/many/{n}/", b"")
    return zip_path


def _bzip2(tmp: Path, rid: str) -> Path:
    info = zipfile.ZipInfo(f"{rid}.bag/data/sources/notes.txt")
    info.compress_type = zipfile.ZIP_BZIP2
    return with_member(info, b"bzip2 " * 1000)(tmp, rid)


CASES: dict[str, BadZip] = {case.name: case for case in (
    BadZip("nul_in_member_name", _raw_name(b"page.tif\x00/../../escape.txt"), UnsafeMemberPath),
    BadZip("escape_sequence_in_member_name", with_member("{rid}.bag/data/page\x1b[31m.tif"), ControlCharacterName),
    BadZip("newline_in_member_name", with_member("{rid}.bag/data/page\n.tif"), ControlCharacterName),
    BadZip("name_component_over_255_bytes", _long_component, MemberNameTooLong),
    BadZip("path_over_path_max", _long_path, MemberNameTooLong),
    BadZip("names_differing_only_by_case", _case_twins, CaseCollision),
    BadZip("flagged_utf8_name_not_utf8", _raw_name(b"notes-caf\xff.txt", flag_bits=0x800), NonUtf8MemberName),
    BadZip("unflagged_utf8_name_from_dos", _raw_name("བོད.txt".encode(), create_system=0), NonUtf8MemberName),
    BadZip("encrypted_member_info_zip", lambda tmp, rid: info_zip_bag(tmp, rid, "-P", "secret"), EncryptedMember),
    BadZip("encrypted_member_7zip", lambda tmp, rid: seven_zip_bag(tmp, rid, "Deflate", "-psecret"),
           EncryptedMember),
    BadZip("deflate64_7zip", lambda tmp, rid: seven_zip_bag(tmp, rid, "Deflate64"), UnsupportedCompression),
    BadZip("bzip2_member", _bzip2, UnsupportedCompression),
    BadZip("zip_bomb_declared_ratio", _declared_ratio, ZipBomb),
    BadZip("too_many_entries", _too_many_entries, ZipBomb),
    BadZip("ds_store_in_payload", with_member("{rid}.bag/data/.DS_Store", DS_STORE), BagIncomplete),
)}
