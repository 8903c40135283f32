"""Bad zips of BagIt semantics and of which works a zip may hold (see bad_zip.py); gathered into ``BAD_ZIPS``.

Each builder starts from a valid bag (``good_zip``) and breaks one rule; a tag file it changes has its digests
refreshed in the tag manifests (``edit_tag_file``), so the refusal is the rule's and not a checksum's.
"""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

from harness.bags import make_bdrc_bag_zip, make_plain_work_zip
from harness.zip_edits import edit_tag_file, read_members
from onprem.finisher.errors import (
    BagDeclarationInvalid,
    BagRidMismatch,
    NoBagInZip,
    TagFileUndecodable,
    TagManifestIncomplete,
    UnexpectedWork,
    UnsafeManifestPath,
)
from tests.reliability.bad_zip import FILE_SIZE, FILES, BadZip, good_zip


def _other_works(*, own: bool):  # type: ignore[no-untyped-def]
    """A zip named ``<rid>.bag.zip`` holding the bag of another work (and, with ``own``, its own bag too)."""

    def build(tmp: Path, rid: str) -> Path:
        folder = tmp / rid
        folder.mkdir(parents=True, exist_ok=True)
        rids = [rid, f"{rid}B"] if own else [f"{rid}B"]
        return make_bdrc_bag_zip(folder, rids=rids, files_per_work=FILES, file_size=FILE_SIZE,
                                 zip_name=f"{rid}.bag.zip")

    return build


def _plain_work_in_bag_zip(tmp: Path, rid: str) -> Path:
    folder = tmp / rid
    folder.mkdir(parents=True, exist_ok=True)
    plain = make_plain_work_zip(folder, rids=[rid], files_per_work=FILES, file_size=FILE_SIZE)
    return plain.rename(plain.with_name(f"{rid}.bag.zip"))


def _tag_edit(name: str, edit):  # type: ignore[no-untyped-def]
    """A good bag whose tag file ``name`` is changed by ``edit(content, rid)``."""

    def build(tmp: Path, rid: str) -> Path:
        zip_path = good_zip(tmp, rid)
        edit_tag_file(zip_path, f"{rid}.bag/{name}", lambda content: edit(content, rid))
        return zip_path

    return build


def _first_line_padded(content: bytes, _rid: str) -> bytes:
    first = content.splitlines(keepends=True)[0]
    return content.replace(first, first.rstrip(b"\r\n") + b" \n", 1)


def _bag_info_line_in_payload_manifest(tmp: Path, rid: str) -> Path:
    """``data/../bag-info.txt`` with bag-info's real digest: bagit normalizes it into a tag path and takes it."""
    zip_path = good_zip(tmp, rid)
    bag_info = {i.filename: c for i, c in read_members(zip_path)}[f"{rid}.bag/bag-info.txt"]
    line = f"{hashlib.sha256(bag_info).hexdigest()}  data/../bag-info.txt\n".encode()
    edit_tag_file(zip_path, f"{rid}.bag/manifest-sha256.txt", lambda content: content + line)
    return zip_path


def _without_line(suffix: str):  # type: ignore[no-untyped-def]
    def edit(content: bytes, _rid: str) -> bytes:
        return b"".join(line for line in content.splitlines(keepends=True)
                        if not line.rstrip().endswith(f" {suffix}".encode()))

    return edit


CASES: dict[str, BadZip] = {case.name: case for case in (
    BadZip("zip_holds_only_another_work", _other_works(own=False), UnexpectedWork),
    BadZip("zip_holds_another_work_beside_its_own", _other_works(own=True), UnexpectedWork),
    BadZip("plain_work_in_a_bag_zip", _plain_work_in_bag_zip, NoBagInZip),
    BadZip("bdrc_rid_disagrees", _tag_edit("bag-info.txt", lambda c, rid: c.replace(
        f"BDRC-RID: {rid}".encode(), f"BDRC-RID: {rid}B".encode())), BagRidMismatch),
    BadZip("bagit_txt_byte_order_mark", _tag_edit("bagit.txt", lambda c, _rid: codecs.BOM_UTF8 + c),
           BagDeclarationInvalid),
    BadZip("bagit_txt_version_whitespace", _tag_edit("bagit.txt", _first_line_padded), BagDeclarationInvalid),
    BadZip("bag_info_latin1_in_utf8_bag", _tag_edit("bag-info.txt", lambda c, _rid: c + "Contact-Name: Chödrön\n"
                                                    .encode("latin-1")), TagFileUndecodable),
    BadZip("unknown_tag_file_encoding", _tag_edit("bagit.txt", lambda c, _rid: c.replace(
        b"UTF-8", b"x-unknown-encoding")), TagFileUndecodable),
    BadZip("manifest_path_dotdot_into_tag_files", _bag_info_line_in_payload_manifest, UnsafeManifestPath),
    BadZip("manifest_path_with_dot_segment", _tag_edit("manifest-sha256.txt", lambda c, rid: c.replace(
        b"  data/", b"  data/./", 1)), UnsafeManifestPath),
    BadZip("tagmanifest_omits_payload_manifest", _tag_edit("tagmanifest-sha256.txt",
                                                           _without_line("manifest-sha256.txt")),
           TagManifestIncomplete),
    BadZip("tagmanifest_omits_bag_info", _tag_edit("tagmanifest-sha256.txt", _without_line("bag-info.txt")),
           TagManifestIncomplete),
)}
