"""The front-to-back zip reader of the stream de-bag (``zip_stream.py``), on real zips made with ``zipfile`` and on
hand-patched header bytes: members in order with the sizes and CRCs zipfile reads, any chunking, what cannot be
streamed (data descriptors) refused by name, what cannot be read at all (encryption, other methods) refused with
its named error, zip64 local headers, truncation, names (raw bytes kept; Info-ZIP's unflagged UTF-8 read as UTF-8)."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from onprem.finisher.debag.zip_stream import ChunkReader, LocalHeader, read_local_header
from onprem.finisher.errors import CorruptArchive, EncryptedMember, StreamUnsupported, UnsupportedCompression

RID = "W1NLM4700"
MIB = 2**20


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at:at + size]


def _parse(data: bytes, chunk: int = MIB) -> tuple[list[tuple[LocalHeader, bytes]], int, bytes]:
    """Every member (its header and its raw, still compressed, bytes), where the members end, and the rest."""
    reader = ChunkReader(_chunks(data, chunk))
    members = []
    while (header := read_local_header(reader, RID)) is not None:
        raw = b"".join(reader.iter_exact(header.compress_size, f"member {header.name!r}", RID))
        members.append((header, raw))
    end = reader.position
    return members, end, reader.rest()


def _content(header: LocalHeader, raw: bytes) -> bytes:
    return zlib.decompress(raw, -15) if header.method == zipfile.ZIP_DEFLATED else raw


def _mixed_zip(path: Path) -> Path:
    """Stored and deflated members, a folder, an empty file and one larger than a MiB (random: incompressible)."""
    rng_bytes = os.urandom(MIB + 12_345)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("W1NLM4700.bag/", b"")
        zf.writestr("W1NLM4700.bag/bagit.txt", b"BagIt-Version: 0.97\n", compress_type=zipfile.ZIP_STORED)
        zf.writestr("W1NLM4700.bag/data/text.txt", b"hello zip " * 5000, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("W1NLM4700.bag/data/empty.txt", b"", compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("W1NLM4700.bag/data/big.tif", rng_bytes, compress_type=zipfile.ZIP_STORED)
        zf.writestr("W1NLM4700.bag/data/big-deflated.tif", rng_bytes[:200_000] * 3,
                    compress_type=zipfile.ZIP_DEFLATED)
    return path


def _local_offset(data: bytes, name: str) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.getinfo(name).header_offset


def _patch_local(data: bytes, name: str, at: int, fmt: str, value: int) -> bytes:
    """``data`` with the field at ``at`` of ``name``'s local header set to ``value``."""
    offset = _local_offset(data, name) + at
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


class _Unseekable(io.RawIOBase):
    """A write-only stream without tell/seek: zipfile then writes every member with a data descriptor."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        self.data += bytes(b)
        return len(b)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("unseekable")


def test_stored_and_deflated_members_are_read_in_order_as_zipfile_reads_them(tmp_path: Path) -> None:
    data = _mixed_zip(tmp_path / "mixed.zip").read_bytes()
    members, end, rest = _parse(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        contents = [zf.read(info) for info in infos]
        cd_offset = zf.start_dir
    assert len(members) == len(infos) == 6
    for (header, raw), info, content in zip(members, infos, contents, strict=True):
        assert (header.offset, header.name, header.method, header.crc, header.compress_size, header.file_size) == (
            info.header_offset, info.filename, info.compress_type, info.CRC, info.compress_size, info.file_size)
        assert header.flags == info.flag_bits
        assert header.is_dir == info.is_dir()
        assert _content(header, raw) == content
    assert {h.method for h, _ in members} == {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
    assert end == cd_offset and rest == data[cd_offset:]
    assert rest.startswith(b"PK\x01\x02")


def test_no_local_header_at_the_central_directory(tmp_path: Path) -> None:
    data = _mixed_zip(tmp_path / "mixed.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        cd_offset = zf.start_dir
    reader = ChunkReader(iter([data[cd_offset:]]))
    assert read_local_header(reader, RID) is None
    assert reader.position == 0, "nothing consumed where the members end"
    assert reader.rest() == data[cd_offset:]
    empty = ChunkReader(iter([]))
    assert read_local_header(empty, RID) is None and empty.position == 0


@pytest.mark.parametrize("chunk", [1, 7, 4096, MIB], ids=["1B", "7B", "4KiB", "1MiB"])
def test_any_chunking_gives_the_same_members(tmp_path: Path, chunk: int) -> None:
    data = _mixed_zip(tmp_path / "mixed.zip").read_bytes()
    whole = _parse(data, len(data))
    assert _parse(data, chunk) == whole
    assert len(whole[0]) == 6


def test_a_header_split_across_chunks_at_every_point(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as zf:
        zf.writestr("a/first.txt", b"first " * 100, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("a/second-with-a-longer-name.txt", b"second", compress_type=zipfile.ZIP_STORED)
    data = (tmp_path / "two.zip").read_bytes()
    second = _local_offset(data, "a/second-with-a-longer-name.txt")
    expected = _parse(data, len(data))
    header_end = second + 30 + len("a/second-with-a-longer-name.txt")
    for cut in range(second, header_end + 1):
        assert _parse_split(data, [cut]) == expected, f"split at {cut}"
    assert _parse_split(data, [second + 2, second + 3, second + 29, second + 31]) == expected


def _parse_split(data: bytes, cuts: list[int]) -> tuple[list[tuple[LocalHeader, bytes]], int, bytes]:
    bounds = [0, *cuts, len(data)]
    reader = ChunkReader(iter([data[a:b] for a, b in itertools.pairwise(bounds)]))
    members = []
    while (header := read_local_header(reader, RID)) is not None:
        members.append((header, b"".join(reader.iter_exact(header.compress_size, header.name, RID))))
    return members, reader.position, reader.rest()


def test_iter_exact_yields_exactly_n_bytes_in_arrival_chunks_and_position_follows() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    reader = ChunkReader(_chunks(data, 1000))
    assert reader.peek(10) == data[:10] and reader.position == 0
    first = list(reader.iter_exact(2500, "a member", RID))
    assert b"".join(first) == data[:2500] and reader.position == 2500
    assert [len(p) for p in first] == [1000, 1000, 500], "pieces as they arrived, the last one cut"
    assert list(reader.iter_exact(0, "nothing", RID)) == [] and reader.position == 2500
    assert reader.read_exact(3, "a field", RID) == data[2500:2503] and reader.position == 2503
    next_pieces = list(reader.iter_exact(497, "the rest of a chunk", RID))
    assert next_pieces == [data[2503:3000]] and reader.position == 3000
    assert reader.peek(5) == data[3000:3005] and reader.position == 3000


def test_iter_exact_past_the_end_is_a_corrupt_archive_named_with_the_rid() -> None:
    reader = ChunkReader(_chunks(b"x" * 100, 30))
    pieces = reader.iter_exact(150, "member 'a/b.tif'", RID)
    got = b""
    with pytest.raises(CorruptArchive, match=rf"^{RID}: the zip ends inside member 'a/b.tif'"):
        for piece in pieces:
            got += piece
    assert got == b"x" * 100 and reader.position == 100
    short = ChunkReader(iter([b"abc"]))
    with pytest.raises(CorruptArchive, match=rf"^{RID}: the zip ends inside a field"):
        short.read_exact(4, "a field", RID)


def test_drain_reads_to_the_end_and_keeps_nothing() -> None:
    data = os.urandom(10_000)
    reader = ChunkReader(_chunks(data, 333))
    reader.read_exact(333, "x", RID)  # one whole chunk: nothing left buffered
    reader.drain()
    assert reader.position == len(data)
    assert reader.rest() == b"" and reader.peek(1) == b"" and reader.position == len(data)


def test_drain_counts_the_bytes_it_had_buffered() -> None:
    """``position`` is the bytes consumed: a drain after a peek must count the peeked bytes too."""
    data = os.urandom(10_000)
    reader = ChunkReader(_chunks(data, 333))
    reader.read_exact(10, "x", RID)
    reader.peek(500)  # buffered (666 bytes arrived), not consumed
    assert reader.position == 10
    reader.drain()
    assert reader.rest() == b""
    assert reader.position == len(data)


def test_rest_returns_everything_left_including_what_was_peeked() -> None:
    data = os.urandom(5000)
    reader = ChunkReader(_chunks(data, 700))
    list(reader.iter_exact(1000, "x", RID))
    assert reader.peek(900) == data[1000:1900]
    assert reader.rest() == data[1000:]
    assert reader.position == len(data)
    assert reader.rest() == b"" and reader.position == len(data)


def test_a_member_with_a_data_descriptor_is_refused_by_name() -> None:
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("W1NLM4700.bag/data/streamed.tif", b"data" * 1000)
    data = bytes(sink.data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.infolist()[0].flag_bits & 0x08, "zipfile wrote a data descriptor"
    reader = ChunkReader(iter([data]))
    with pytest.raises(StreamUnsupported, match=r"'W1NLM4700.bag/data/streamed.tif'.*data descriptor"):
        read_local_header(reader, RID)


def test_an_encrypted_member_is_refused_by_name(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "e.zip", "w") as zf:
        zf.writestr("plain.txt", b"ok")
        zf.writestr("secret.txt", b"sealed")
    data = (tmp_path / "e.zip").read_bytes()
    data = _patch_local(data, "secret.txt", 6, "<H", 0x01)
    reader = ChunkReader(iter([data]))
    first = read_local_header(reader, RID)
    assert first is not None and first.name == "plain.txt"
    list(reader.iter_exact(first.compress_size, "plain.txt", RID))
    with pytest.raises(EncryptedMember, match=rf"^{RID}: member 'secret.txt' is encrypted"):
        read_local_header(reader, RID)


def test_a_patched_unsupported_method_is_refused_by_name(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as zf:
        zf.writestr("odd.bin", b"bytes")
    data = _patch_local((tmp_path / "m.zip").read_bytes(), "odd.bin", 8, "<H", 12)
    with pytest.raises(UnsupportedCompression, match=r"'odd.bin' uses compression method 12 \(bzip2\)"):
        read_local_header(ChunkReader(iter([data])), RID)


def test_a_real_bzip2_member_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("bz.txt", b"bzip2 " * 1000, compress_type=zipfile.ZIP_BZIP2)
    with pytest.raises(UnsupportedCompression, match=rf"'bz.txt' uses compression method {zipfile.ZIP_BZIP2}"):
        read_local_header(ChunkReader(iter([(tmp_path / "b.zip").read_bytes()])), RID)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_zip64_sizes_in_a_local_header_are_read_from_its_zip64_extra(tmp_path: Path, compression: int) -> None:
    content = b"zip64 member " * 3000
    with zipfile.ZipFile(tmp_path / "z64.zip", "w", compression=compression) as zf:
        zf.writestr("before.txt", b"before")
        with zf.open("big/forced.bin", "w", force_zip64=True) as dest:
            dest.write(content)
        zf.writestr("after.txt", b"after")
    data = (tmp_path / "z64.zip").read_bytes()
    offset = _local_offset(data, "big/forced.bin")
    assert struct.unpack_from("<II", data, offset + 18) == (0xFFFFFFFF, 0xFFFFFFFF), "sizes only in the extra"
    members, _, _ = _parse(data, 5)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo("big/forced.bin")
    header, raw = members[1]
    assert (header.name, header.offset, header.crc) == ("big/forced.bin", info.header_offset, info.CRC)
    assert (header.compress_size, header.file_size) == (info.compress_size, info.file_size)
    assert header.file_size == len(content) and _content(header, raw) == content
    assert [h.name for h, _ in members] == ["before.txt", "big/forced.bin", "after.txt"]


def test_zip64_marks_without_a_zip64_extra_are_a_corrupt_archive(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as zf:
        zf.writestr("liar.bin", b"bytes")
    data = _patch_local((tmp_path / "m.zip").read_bytes(), "liar.bin", 22, "<I", 0xFFFFFFFF)
    with pytest.raises(CorruptArchive, match=rf"^{RID}: member 'liar.bin' has zip64 sizes but no zip64 extra"):
        read_local_header(ChunkReader(iter([data])), RID)


def test_truncated_input_is_a_corrupt_archive_starting_with_the_rid(tmp_path: Path) -> None:
    data = _mixed_zip(tmp_path / "mixed.zip").read_bytes()
    text = _local_offset(data, "W1NLM4700.bag/data/text.txt")
    name_start = text + 30
    data_start = name_start + len("W1NLM4700.bag/data/text.txt")
    cases = {
        text + 12: "a local file header",
        name_start + 5: "a member name",
        data_start + 10: "member 'W1NLM4700.bag/data/text.txt'",
    }
    for cut, what in cases.items():
        with pytest.raises(CorruptArchive, match=rf"^{RID}: the zip ends inside {what}") as caught:
            _parse(data[:cut], 7)
        assert caught.value.work_rid == RID


def test_truncated_extra_field_is_a_corrupt_archive(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        info = zipfile.ZipInfo("with-extra.bin")
        info.extra = struct.pack("<HH", 0xCAFE, 8) + b"12345678"
        zf.writestr(info, b"payload")
    data = (tmp_path / "x.zip").read_bytes()
    cut = 30 + len("with-extra.bin") + 5
    with pytest.raises(CorruptArchive, match=rf"^{RID}: the zip ends inside a local extra field"):
        read_local_header(ChunkReader(iter([data[:cut]])), RID)
    header = read_local_header(ChunkReader(iter([data])), RID)
    assert header is not None and header.compress_size == len(b"payload")


def test_names_are_decoded_as_zipfile_decodes_them(tmp_path: Path) -> None:
    placeholder, cp437_name = "cafX.txt", "caf\x82.txt".encode("latin-1")  # 0x82 is é in cp437
    with zipfile.ZipFile(tmp_path / "names.zip", "w") as zf:
        zf.writestr(placeholder, b"cp437")
        zf.writestr("ཀ་བཀའ/日本.txt", b"utf-8")  # non-ASCII: zipfile sets the UTF-8 flag
    data = (tmp_path / "names.zip").read_bytes().replace(placeholder.encode(), cp437_name)
    members, _, _ = _parse(data, 3)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    assert [h.name for h, _ in members] == [i.filename for i in infos] == ["café.txt", "ཀ་བཀའ/日本.txt"]
    assert not members[0][0].flags & 0x800 and members[1][0].flags & 0x800


def test_raw_name_bytes_are_kept_beside_the_name(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "n.zip", "w") as zf:
        zf.writestr("བོད/ཡིག.txt", b"x")  # zipfile flags it UTF-8
    header = read_local_header(ChunkReader(iter([(tmp_path / "n.zip").read_bytes()])), RID)
    assert header is not None and header.raw_name == "བོད/ཡིག.txt".encode() and header.name == "བོད/ཡིག.txt"


def test_info_zip_unflagged_utf8_names_are_read_as_utf8(tmp_path: Path) -> None:
    """Info-ZIP ``zip`` on Linux writes the filesystem's UTF-8 bytes without bit 11 (zipfile would say cp437)."""
    assert shutil.which("zip"), "Info-ZIP zip is a Debian package of the Makefile"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "བོད་ཡིག.tif").write_bytes(b"II*\x00 tibetan")
    subprocess.run(["zip", "-q", "-X", "../iz.zip", "བོད་ཡིག.tif"], cwd=tmp_path / "src", check=True)
    header = read_local_header(ChunkReader(iter([(tmp_path / "iz.zip").read_bytes()])), RID)
    assert header is not None and not header.flags & 0x800
    assert header.name == "བོད་ཡིག.tif" and header.raw_name == "བོད་ཡིག.tif".encode()
