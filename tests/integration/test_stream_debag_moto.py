"""Stream de-bag (one part, ``FetchSettings.stream``) through ``fetch_and_debag`` against a moto S3 server on
loopback: the same works as the zip on disk from one GET without a Range, every failure named and nothing placed,
the fallback to the disk path for zips that cannot be streamed, pinning, and a cut stream retried; the zip
container's rules while streaming (bombs bounded before the disk fills, the entry count, encrypted and Deflate64
members named from the one GET, macOS junk skipped)."""

from __future__ import annotations

import errno
import hashlib
import io
import re
import struct
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from urllib3.exceptions import ProtocolError

from harness.bags import make_bdrc_bag_zip, zip_entries
from harness.zip_edits import add_member, corrupt_one_byte, read_members, tamper_member
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import (
    BagInvalid,
    ChecksumMismatch,
    CorruptArchive,
    EncryptedMember,
    IntegrityError,
    ObjectChanged,
    RetryableError,
    TransferError,
    UnsafeArchive,
    UnsupportedCompression,
    ZipBomb,
)
from onprem.finisher.fetch.download import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag import stream as stream_debag
from onprem.finisher.fetch_debag.overlapped import FetchDebagJob
from onprem.finisher.work.wiring import fetch_and_debag
from tests.reliability.real_zips import APPLE_DOUBLE, DS_STORE, info_zip_bag, seven_zip_bag

RID, OTHER_RID = "W1NLM4700", "W1NLM4701"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
STREAM = FetchSettings(part_size=2**30, max_concurrency=1, min_free_bytes=0)
ON_DISK = FetchSettings(part_size=2**30, max_concurrency=1, min_free_bytes=0, stream=False)
DEBAG = DebagSettings(workers=2, fsync=False)
IMAGE = f"data/{RID}-I1KG1/images/{RID}-I1KG1_0005.tif"
MEMBER = f"{RID}.bag/{IMAGE}"
FILES = 24


def _bag(tmp_path: Path, **kwargs: object) -> Path:
    """A bag zip of the fetched work (~700 KB): 24 payload members (a fetched zip holds its own work only)."""
    return make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=FILES, file_size=30_000,
                             **kwargs)  # type: ignore[arg-type]


def _put(s3, bucket: str, body: bytes, *, checksum: bool = True) -> FetchRequest:  # type: ignore[no-untyped-def]
    extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=body, **extra)
    return FetchRequest(RID, bucket, KEY, len(body), put["ETag"], put.get("VersionId"))


def _gets(s3) -> list[str | None]:  # type: ignore[no-untyped-def]
    """The Range header of every GetObject the client makes from now on (None: the whole object)."""
    ranges: list[str | None] = []
    s3.meta.events.register("before-call.s3.GetObject",
                            lambda params, **_: ranges.append(params["headers"].get("Range")))
    return ranges


def _tree(root: Path) -> dict[str, tuple[str | None, float]]:
    """sha256 and mtime of every file and folder the zip dates (not the work roots nor the tag folders)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() and (len(rel.parts) == 1 or rel.name.endswith(".bag")):
            continue  # made by the de-bag, dated when it ran
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        found[rel.as_posix()] = (digest, path.stat().st_mtime)
    return found


def _works(result) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    return [(w.work_rid, w.bag, w.algorithms, w.files, w.bytes, w.fixity_checked, w.warnings) for w in result.works]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _nothing_placed(staging: Path) -> None:
    assert not (staging / RID).exists() and not (staging / OTHER_RID).exists()
    assert [n for n in _names(staging) if not n.startswith(".debag-")] == []


def _data_offset(zip_bytes: bytes, name: str) -> int:
    """Where ``name``'s (compressed) bytes start in the zip."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        offset = zf.getinfo(name).header_offset
    name_length, extra_length = struct.unpack_from("<HH", zip_bytes, offset + 26)
    return offset + 30 + name_length + extra_length


def _central_entry(zip_bytes: bytes, name: str) -> int:
    """Where ``name``'s central directory entry starts (zip without a comment, not zip64)."""
    cd_offset = struct.unpack_from("<I", zip_bytes, len(zip_bytes) - 22 + 16)[0]
    at = cd_offset
    while zip_bytes[at:at + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", zip_bytes, at + 28)
        if zip_bytes[at + 46:at + 46 + name_length].decode() == name:
            return at
        at += 46 + name_length + extra_length + comment_length
    raise AssertionError(f"{name} not in the central directory")


def _wrap_whole_get(s3, wrap: Callable) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Replace the raw read of every whole-object GET body (the bytes botocore hashes) by ``wrap(real_read)``."""
    def hook(response: dict, **_: object) -> None:  # type: ignore[type-arg]
        if response.get("ContentRange") is None:
            raw = response["Body"]._raw_stream
            raw.read = wrap(raw.read)

    s3.meta.events.register("after-call.s3.GetObject", lambda parsed, **kw: hook(parsed))


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED], ids=["deflated", "stored"])
def test_streamed_result_is_identical_to_the_zip_on_disk_from_one_get(s3, bucket: str, tmp_path: Path,
                                                                       compression: int) -> None:
    request = _put(s3, bucket, _bag(tmp_path, compression=compression).read_bytes())
    on_disk = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "disk-dl", tmp_path / "disk", ON_DISK, DEBAG))
    gets = _gets(s3)
    streamed = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", STREAM, DEBAG))
    assert gets == [None], "one GET of the whole object, no Range"
    tree = _tree(tmp_path / "staging")
    assert tree == _tree(tmp_path / "disk") and sum(d is not None for d, _ in tree.values()) > FILES
    assert _works(streamed.debag) == _works(on_disk.debag)
    assert [w.work_rid for w in streamed.debag.works] == [RID]
    assert all(w.fixity_checked and w.files == FILES for w in streamed.debag.works)
    assert streamed.fetch.checksum_verified == "sha256"
    assert (streamed.fetch.size, streamed.fetch.etag) == (request.size, request.etag)
    assert _names(tmp_path / "dl") == [], "no .part, no zip, no journal"
    assert _names(tmp_path / "staging") == [RID], "no .debag-* temp dir left"


def test_a_manifest_algorithm_not_streamed_is_read_back_from_disk(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path, algorithms=("md5", "sha256")).read_bytes())
    settings = DebagSettings(workers=2, fsync=False, stream_algorithms=("sha512",))
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", STREAM, settings))
    on_disk = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "disk-dl", tmp_path / "disk", ON_DISK, settings))
    assert [(w.work_rid, w.fixity_checked) for w in result.debag.works] == [(RID, True)]
    assert all(set(w.algorithms) == {"md5", "sha256"} for w in result.debag.works)
    assert _works(result.debag) == _works(on_disk.debag)
    assert _tree(tmp_path / "staging") == _tree(tmp_path / "disk")


def test_a_tampered_payload_member_is_a_checksum_mismatch_and_nothing_is_placed(s3, bucket: str,
                                                                                 tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    tamper_member(zip_path, MEMBER, offset=42)  # its zip CRC is right: only the manifest can tell
    request = _put(s3, bucket, zip_path.read_bytes())
    staging, dl = tmp_path / "staging", tmp_path / "dl"
    with pytest.raises(ChecksumMismatch, match=rf"^{RID}: checksum mismatch for {IMAGE} \(sha256 expected") as caught:
        fetch_and_debag(s3, FetchDebagJob(request, dl, staging, STREAM, DEBAG))
    assert isinstance(caught.value, BagInvalid) and caught.value.work_rid == RID
    _nothing_placed(staging)
    assert any(n.startswith(f".debag-failed-{RID}") for n in _names(staging)), "evidence kept"
    assert _names(dl) == [], "downloads dir empty"


def test_a_corrupt_member_without_an_s3_checksum_is_a_corrupt_archive(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    corrupt_one_byte(zip_path, MEMBER, offset=100)
    request = _put(s3, bucket, zip_path.read_bytes(), checksum=False)
    staging, dl = tmp_path / "staging", tmp_path / "dl"
    with pytest.raises(CorruptArchive, match=rf"^{RID}: corrupt zip member {MEMBER}"):
        fetch_and_debag(s3, FetchDebagJob(request, dl, staging, STREAM, DEBAG))
    _nothing_placed(staging)
    assert _names(dl) == []


def test_a_corrupt_member_without_a_checksum_to_decide_stops_the_stream_there(
    s3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no full-object checksum nothing could blame the transport: the rest of the zip is not downloaded."""
    monkeypatch.setattr(stream_debag, "QUEUE_CHUNKS", 1)  # the stream runs at most a chunk or two ahead of the writer
    zip_path = make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=12, file_size=1_000_000)
    first = f"{RID}.bag/data/{RID}-I1KG1/images/{RID}-I1KG1_0001.tif"
    corrupt_one_byte(zip_path, first, offset=100)
    bare = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1",
                        config=Config(request_checksum_calculation="when_required"))  # no default CRC32 either
    put = bare.put_object(Bucket=bucket, Key=KEY, Body=zip_path.read_bytes())
    request = FetchRequest(RID, bucket, KEY, zip_path.stat().st_size, put["ETag"], None)
    assert not any(k.startswith("Checksum") for k in s3.head_object(Bucket=bucket, Key=KEY, ChecksumMode="ENABLED"))
    read: list[int] = []

    def count(response: dict, **_: object) -> None:  # type: ignore[type-arg]
        body = response["Body"]
        real_read = body.read
        body.read = lambda *a, **k: (lambda chunk: read.append(len(chunk)) or chunk)(real_read(*a, **k))

    s3.meta.events.register("after-call.s3.GetObject", lambda parsed, **kw: count(parsed))
    with pytest.raises(CorruptArchive, match=rf"^{RID}: corrupt zip member {first}"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", STREAM,
                        DebagSettings(workers=1, fsync=False)))
    assert 0 < sum(read) < request.size // 2, f"read {sum(read)} of {request.size} bytes"


def test_bytes_changed_in_transit_are_an_integrity_error_not_a_corrupt_member(s3, bucket: str,
                                                                              tmp_path: Path) -> None:
    body = _bag(tmp_path).read_bytes()
    request = _put(s3, bucket, body)  # the S3 checksum is of these, the good bytes
    flip_at = _data_offset(body, MEMBER) + 100  # inside a member, mid-stream

    def flipping(real_read):  # type: ignore[no-untyped-def]
        sent = [0]

        def read(amt: int | None = None, *args: object, **kwargs: object) -> bytes:
            chunk = real_read(amt, *args, **kwargs)
            start, sent[0] = sent[0], sent[0] + len(chunk)
            if start <= flip_at < sent[0]:
                at = flip_at - start
                chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1:]
            return chunk

        return read

    _wrap_whole_get(s3, flipping)
    staging, dl = tmp_path / "staging", tmp_path / "dl"
    with pytest.raises(IntegrityError, match=rf"^{RID}: sha256 mismatch for {RID}.bag.zip") as caught:
        fetch_and_debag(s3, FetchDebagJob(request, dl, staging, STREAM, DEBAG))
    assert isinstance(caught.value, RetryableError) and not isinstance(caught.value, CorruptArchive)
    _nothing_placed(staging)
    assert _names(dl) == []


@pytest.mark.parametrize("evil", ["../evil.txt", "{tmp}/abs-evil.txt"], ids=["dotdot", "absolute"])
def test_an_unsafe_member_name_writes_nothing_outside_and_places_nothing(s3, bucket: str, tmp_path: Path,
                                                                         evil: str) -> None:
    evil = evil.format(tmp=tmp_path)
    staging, dl = tmp_path / "sub" / "staging", tmp_path / "sub" / "dl"
    zip_path = zip_entries(tmp_path / "evil.zip", [(f"{RID}/images/ok.tif", b"fine" * 10_000),
                                                   (evil, b"outside")])
    request = _put(s3, bucket, zip_path.read_bytes())
    with pytest.raises(UnsafeArchive, match=rf"^{RID}: member {re.escape(repr(evil))}"):
        fetch_and_debag(s3, FetchDebagJob(request, dl, staging, STREAM, DEBAG))
    assert not (tmp_path / "sub" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "abs-evil.txt").exists()
    outside = list(tmp_path.rglob("*evil.txt"))
    assert outside == [], "a member name became a path"
    _nothing_placed(staging)
    assert _names(dl) == []


@pytest.mark.parametrize("field", ["crc", "name"])
def test_a_central_directory_that_disagrees_with_a_local_header_is_a_corrupt_archive(
    s3, bucket: str, tmp_path: Path, field: str,
) -> None:
    body = bytearray(_bag(tmp_path).read_bytes())
    entry = _central_entry(bytes(body), MEMBER)
    if field == "crc":
        struct.pack_into("<I", body, entry + 16, struct.unpack_from("<I", body, entry + 16)[0] ^ 0x1)
    else:
        last = entry + 46 + len(MEMBER) - 1  # ..._0005.tif → ..._0005.tig: still a safe name, and a new one
        assert body[last:last + 1] == b"f"
        body[last:last + 1] = b"g"
    request = _put(s3, bucket, bytes(body))
    staging, dl = tmp_path / "staging", tmp_path / "dl"
    with pytest.raises(CorruptArchive, match=rf"^{RID}: .*(central directory|local header)"):
        fetch_and_debag(s3, FetchDebagJob(request, dl, staging, STREAM, DEBAG))
    _nothing_placed(staging)
    assert _names(dl) == []


def _with_data_descriptors(good: Path, tmp_path: Path, which: str) -> Path:
    """``good`` rewritten with data descriptors: every member (written to an unseekable stream, as zipfile does
    there), or only a member well after the first ones (its local header's flag bit 3 set, its sizes kept)."""
    described = tmp_path / "described.zip"
    if which == "later-member":
        body = bytearray(good.read_bytes())
        with zipfile.ZipFile(good) as zf:
            offset = zf.getinfo(f"{RID}.bag/manifest-sha256.txt").header_offset
        struct.pack_into("<H", body, offset + 6, struct.unpack_from("<H", body, offset + 6)[0] | 0x08)
        described.write_bytes(bytes(body))
        return described
    sink = io.BytesIO()

    class Unseekable:
        def write(self, data: bytes) -> int:
            return sink.write(data)

        def flush(self) -> None:
            return None

    with zipfile.ZipFile(Unseekable(), "w") as zf:  # type: ignore[arg-type]
        for info, content in read_members(good):
            zf.writestr(info, content)
    described.write_bytes(sink.getvalue())
    with zipfile.ZipFile(described) as zf:
        assert all(info.flag_bits & 0x08 for info in zf.infolist()), "every member has a data descriptor"
    return described


@pytest.mark.parametrize("which", ["every-member", "later-member"])
def test_a_zip_with_data_descriptors_falls_back_to_the_disk_path(s3, bucket: str, tmp_path: Path,
                                                                 which: str) -> None:
    described = _with_data_descriptors(_bag(tmp_path), tmp_path, which)
    request = _put(s3, bucket, described.read_bytes())
    gets = _gets(s3)
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", STREAM, DEBAG))
    assert len(gets) >= 2 and gets[0] is None, "the stream was tried, then the zip downloaded to disk"
    (tmp_path / "seq").mkdir()
    sequential = debag_archive(described, RID, tmp_path / "seq", DEBAG, version_tag=request.etag)
    assert _tree(tmp_path / "staging") == _tree(tmp_path / "seq") and len(_tree(tmp_path / "seq")) > FILES
    assert _works(result.debag) == _works(sequential)
    assert all(w.fixity_checked and w.files == FILES for w in result.debag.works)
    assert result.fetch.checksum_verified == "sha256"
    assert result.fetch.path.read_bytes() == described.read_bytes()
    assert _names(tmp_path / "staging") == [RID], "no .debag-* temp dir left"


def test_bytes_between_the_last_member_and_the_central_directory_fall_back_to_the_disk_path(
    s3, bucket: str, tmp_path: Path,
) -> None:
    """A valid zip the stream cannot vouch for (a gap before the central directory): read from disk instead."""
    good = _bag(tmp_path).read_bytes()
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        cd_start = zf.start_dir
    gap = b"\x00" * 1000
    body = bytearray(good[:cd_start] + gap + good[cd_start:])
    eocd = body.rindex(b"PK\x05\x06")
    struct.pack_into("<I", body, eocd + 16, cd_start + len(gap))  # the central directory's offset, moved
    gapped = tmp_path / "gapped.zip"
    gapped.write_bytes(bytes(body))
    with zipfile.ZipFile(gapped) as zf:
        assert zf.testzip() is None, "the gapped zip is a valid zip"
    request = _put(s3, bucket, bytes(body))
    gets = _gets(s3)
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", STREAM, DEBAG))
    assert len(gets) >= 2 and gets[0] is None, "the stream was tried, then the zip downloaded to disk"
    assert all(w.fixity_checked and w.files == FILES for w in result.debag.works)
    assert _names(tmp_path / "staging") == [RID], "no .debag-* temp dir left"


def test_an_object_overwritten_between_head_and_get_is_object_changed(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path).read_bytes())  # unversioned: only IfMatch pins the bytes
    other = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1")
    gets = _gets(s3)

    def overwrite_before_the_get(**_: object) -> None:
        if len(gets) == 1:
            other.put_object(Bucket=bucket, Key=KEY, Body=b"a newer bag")

    s3.meta.events.register("before-call.s3.GetObject", overwrite_before_the_get)
    staging, dl = tmp_path / "staging", tmp_path / "dl"
    with pytest.raises(ObjectChanged, match=f"^{RID}: .*overwritten"):
        fetch_and_debag(s3, FetchDebagJob(request, dl, staging, STREAM, DEBAG))
    assert gets == [None]
    assert _names(dl) == []
    assert _names(staging) == []


def _cut_after(limit: int, how: str):  # type: ignore[no-untyped-def]
    def wrap(real_read):  # type: ignore[no-untyped-def]
        sent = [0]

        def read(amt: int | None = None, *args: object, **kwargs: object) -> bytes:
            if sent[0] >= limit:
                if how == "reset":
                    raise ProtocolError("Connection broken: connection reset by peer")
                return b""
            chunk = real_read(min(amt or limit, limit - sent[0]), *args, **kwargs)
            sent[0] += len(chunk)
            return chunk

        return read

    return wrap


@pytest.mark.parametrize("how", ["reset", "early-eof"])
def test_a_stream_cut_off_is_a_transfer_error_and_the_next_call_succeeds(s3, bucket: str, tmp_path: Path,
                                                                         how: str) -> None:
    request = _put(s3, bucket, _bag(tmp_path).read_bytes())
    staging, dl = tmp_path / "staging", tmp_path / "dl"
    cutting = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1")
    _wrap_whole_get(cutting, _cut_after(request.size // 2, how))
    with pytest.raises(TransferError, match=rf"^{RID}: ") as caught:
        fetch_and_debag(cutting, FetchDebagJob(request, dl, staging, STREAM, DEBAG))
    assert isinstance(caught.value, RetryableError)
    _nothing_placed(staging)
    gets = _gets(s3)
    result = fetch_and_debag(s3, FetchDebagJob(request, dl, staging, STREAM, DEBAG))
    assert gets == [None]
    assert [w.work_rid for w in result.debag.works] == [RID]
    assert all(w.fixity_checked and w.files == FILES for w in result.debag.works)
    assert result.fetch.checksum_verified == "sha256"
    assert _names(staging) == [RID]
    assert _names(dl) == []


# --- the zip container in the stream: bombs, entry count, unreadable members, macOS junk -----------------
SMALL_STAGING = 6 * 2**20
FLOOR = 4 * 2**20


@pytest.fixture
def small_staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 6 MiB staging filesystem (tmpfs; root may mount one) or, where mounting is refused, a 6 MiB write limit
    on the stream's member files: a bomb that wrote past its limit would end as disk full, not as ZipBomb."""
    folder = tmp_path / "small-staging"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_STAGING}", "tmpfs", str(folder)],
                                 capture_output=True, check=False).returncode == 0
    except OSError:
        mounted = False
    if not mounted:
        monkeypatch.setattr(stream_debag, "open", _limited_open(SMALL_STAGING), raising=False)
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def _limited_open(limit: int) -> Callable[..., Any]:
    written = [0]

    class LimitedFile:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._file = open(*args, **kwargs)  # closed by the writer (close() passes through)

        def write(self, chunk: bytes) -> int:
            written[0] += len(chunk)
            if written[0] > limit:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return self._file.write(chunk)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._file, name)

    return LimitedFile


def test_small_members_of_a_bomb_stop_at_the_floor_while_streaming(s3, bucket: str, tmp_path: Path,
                                                                    small_staging: Path) -> None:
    """40 MiB of zeros in members under 1 MiB (~40 KiB compressed) on a 6 MiB staging disk: ZipBomb at the
    4 MiB floor, from the one GET, never disk full."""
    members = [(f"{RID}/images/{RID}_{n:04d}.tif", bytes(2**20 - 1)) for n in range(40)]
    zip_path = zip_entries(tmp_path / "bomb.zip", members, compression=zipfile.ZIP_DEFLATED)
    request = _put(s3, bucket, zip_path.read_bytes())
    gets = _gets(s3)
    settings = DebagSettings(workers=2, fsync=False, zip_ratio_floor_bytes=FLOOR)
    with pytest.raises(ZipBomb, match=rf"^{RID}: member .*: the zip inflates \d+ bytes from \d+ compressed"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", small_staging, STREAM, settings))
    assert gets == [None], "refused from the stream, not downloaded again"
    _nothing_placed(small_staging)


def test_more_entries_than_the_limit_stop_the_stream(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path).read_bytes())
    gets = _gets(s3)
    settings = DebagSettings(workers=2, fsync=False, max_entries=20)
    with pytest.raises(ZipBomb, match=r"21 entries or more \(limit 20\)"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", STREAM, settings))
    assert gets == [None]
    _nothing_placed(tmp_path / "staging")


@pytest.mark.parametrize("case", ["info_zip_encrypted", "seven_zip_deflate64"])
def test_a_member_no_path_can_read_is_refused_from_the_stream_by_name(s3, bucket: str, tmp_path: Path,
                                                                      case: str) -> None:
    if case == "info_zip_encrypted":
        zip_path, error = info_zip_bag(tmp_path, RID, "-P", "secret"), EncryptedMember
    else:
        zip_path, error = seven_zip_bag(tmp_path, RID, "Deflate64"), UnsupportedCompression
    request = _put(s3, bucket, zip_path.read_bytes())
    gets = _gets(s3)
    with pytest.raises(error, match=rf"^{RID}: member "):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", STREAM, DEBAG))
    assert gets == [None], "named at once: the zip is not downloaded again to disk"
    _nothing_placed(tmp_path / "staging")


def test_macos_junk_is_skipped_by_the_stream_and_the_bag_taken(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    add_member(zip_path, f"__MACOSX/{RID}.bag/._bagit.txt", APPLE_DOUBLE)
    add_member(zip_path, f"__MACOSX/{RID}.bag/data/._\x01odd-name.tif", APPLE_DOUBLE)  # never guarded: junk
    add_member(zip_path, ".DS_Store", DS_STORE)
    request = _put(s3, bucket, zip_path.read_bytes())
    gets = _gets(s3)
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", STREAM, DEBAG))
    assert gets == [None], "streamed: the junk did not send it to the disk path"
    assert [(w.work_rid, w.fixity_checked, w.files) for w in result.debag.works] == [(RID, True, FILES)]
    assert _names(tmp_path / "staging") == [RID]
    for junk in ("__MACOSX", ".DS_Store", "._*"):
        assert not list((tmp_path / "staging").rglob(junk)), junk
