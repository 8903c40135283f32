"""A zip read while it is still arriving: where its central directory starts, members read between arrivals, and
waiting for bytes that come, never come, or are no longer wanted."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import pytest

from harness.bags import zip_entries
from onprem.finisher.debag.extract import MemberExtractor
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.safety import check_archive
from onprem.finisher.errors import CorruptArchive, ExtractionCancelled, SourceUnavailable, TransferError
from onprem.finisher.fetch.download import Download, FetchRequest
from onprem.finisher.fetch.journal import DownloadIdentity, FetchJournal
from onprem.finisher.fetch.s3 import CHUNK_SIZE
from onprem.finisher.fetch_debag.arriving import ArrivingZip, central_directory_start
from onprem.finisher.progress import NullProgress

RID = "W1NLM4700"


def _download(tmp_path: Path, size: int, part_size: int, done: set[int]) -> Download:
    identity = DownloadIdentity("bucket", "key.zip", '"etag"', None, size, part_size)
    journal = FetchJournal(tmp_path / "key.zip.part.json", identity, done)
    return Download(FetchRequest(RID, "bucket", "key.zip"), identity, tmp_path / "key.zip", tmp_path / "key.zip.part",
                    journal, None, "")


@pytest.mark.parametrize("comment", [b"", b"x" * 70_000], ids=["plain", "long-comment"])
def test_central_directory_start_is_where_zipfile_finds_it(tmp_path: Path, comment: bytes) -> None:
    zip_path = zip_entries(tmp_path / "a.zip", [(f"{RID}/images/{i}.tif", os.urandom(1000)) for i in range(5)])
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.comment = comment[:0xFFFF]
    with zipfile.ZipFile(zip_path) as zf:
        assert central_directory_start(zip_path, RID) == zf.start_dir


def test_central_directory_start_of_a_zip64_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)  # zip64 end records from the second member on
    zip_path = zip_entries(tmp_path / "a.zip", [(f"{RID}/{i}.tif", os.urandom(100)) for i in range(3)])
    assert zip_path.read_bytes().find(b"PK\x06\x06") > 0
    with zipfile.ZipFile(zip_path) as zf:
        assert central_directory_start(zip_path, RID) == zf.start_dir


def test_a_file_without_an_end_record_is_a_corrupt_archive(tmp_path: Path) -> None:
    path = tmp_path / "zeros.zip.part"
    path.write_bytes(bytes(100_000))
    with pytest.raises(CorruptArchive, match=f"^{RID}: unreadable zip zeros.zip.part"):
        central_directory_start(path, RID)


def test_a_member_read_before_its_neighbour_arrived_is_no_stale_read_of_that_neighbour(tmp_path: Path) -> None:
    first, second = os.urandom(3000), os.urandom(3000)  # both fit in one read-ahead buffer
    complete = zip_entries(tmp_path / "a.zip", [(f"{RID}/a.tif", first), (f"{RID}/b.tif", second)])
    with zipfile.ZipFile(complete) as zf:
        members, second_ends = check_archive(zf, RID, DebagSettings()), zf.start_dir
    whole = complete.read_bytes()
    second_at = members[1].info.header_offset
    arriving = tmp_path / "a.zip.part"
    arriving.write_bytes(whole[:second_at] + bytes(second_ends - second_at) + whole[second_ends:])  # not yet there
    extractor = MemberExtractor(arriving, RID, DebagSettings(fsync=False), NullProgress())
    try:
        extractor.extract(members[0], tmp_path / "out" / "a.tif", ("sha256",))
        with open(arriving, "r+b") as f:  # the second member's part arrives
            f.seek(second_at)
            f.write(whole[second_at:second_ends])
        extractor.extract(members[1], tmp_path / "out" / "b.tif", ("sha256",))
    finally:
        extractor.close()
    assert (tmp_path / "out" / "b.tif").read_bytes() == second


def test_waiting_for_a_span_returns_once_every_part_of_it_arrived(tmp_path: Path) -> None:
    source = ArrivingZip(_download(tmp_path, 1000, 100, {0}), settle=lambda: None)
    released = threading.Event()

    def wait() -> None:
        source.wait_range(150, 320, what="a member")
        released.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    for part in (1, 2):
        source.part_arrived(part)
    assert not released.wait(0.05)  # byte 319 lies in part 3
    source.part_arrived(3)
    waiter.join(timeout=10)
    assert released.is_set()


def test_a_failed_download_wakes_the_waiters_with_its_error(tmp_path: Path) -> None:
    source = ArrivingZip(_download(tmp_path, 1000, 100, set()), settle=lambda: None)
    failure = TransferError(RID, "GET bytes=0-99 failed: connection reset")
    source.download_ended(failure)
    with pytest.raises(SourceUnavailable) as caught:
        source.wait_range(0, 50, what="a member")
    assert caught.value.cause is failure


def test_a_cancelled_wait_stops(tmp_path: Path) -> None:
    source = ArrivingZip(_download(tmp_path, 1000, 100, set()), settle=lambda: None)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(ExtractionCancelled):
        source.wait_range(0, 50, cancelled, what="a member")


def test_bytes_read_ahead_are_written_only_where_the_stream_cannot_be_yet(tmp_path: Path) -> None:
    size = 4 * CHUNK_SIZE
    download = _download(tmp_path, size, size, set())  # one part: one stream from the start
    download.part_path.write_bytes(bytes(size))
    source = ArrivingZip(download, lambda: None)
    tail_start = size - 1000
    source.written(0, tail_start - CHUNK_SIZE + 1)  # the stream's next chunk may already reach the tail
    assert not source.write_ahead(tail_start, b"t" * 1000, 0, threading.Event())
    assert download.part_path.read_bytes()[tail_start:] == bytes(1000)
    fresh = ArrivingZip(download, lambda: None)
    fresh.written(0, tail_start - CHUNK_SIZE)
    assert fresh.write_ahead(tail_start, b"t" * 1000, 0, threading.Event())
    assert download.part_path.read_bytes()[tail_start:] == b"t" * 1000
    fresh.wait_range(tail_start, size, what="the tail")  # readable at once


def test_bytes_read_ahead_wait_for_the_small_parts_and_skip_them(tmp_path: Path) -> None:
    size = 4 * CHUNK_SIZE + 100  # a big part, then a 100-byte part: the tail spans both
    download = _download(tmp_path, size, 4 * CHUNK_SIZE, set())
    download.part_path.write_bytes(bytes(size))
    source, give_up = ArrivingZip(download, lambda: None), threading.Event()
    tail_start = size - 1000
    written = threading.Thread(target=lambda: results.append(source.write_ahead(tail_start, b"t" * 1000, 100,
                                                                                give_up)))
    results: list[bool] = []
    written.start()
    with open(download.part_path, "r+b") as f:  # the small last part arrives: its bytes are not written over
        f.seek(4 * CHUNK_SIZE)
        f.write(b"s" * 100)
    source.part_arrived(1)
    written.join(timeout=30)
    assert results == [True]
    assert download.part_path.read_bytes()[tail_start:] == b"t" * 900 + b"s" * 100
    give_up.set()
    assert not ArrivingZip(download, lambda: None).write_ahead(tail_start, b"t" * 1000, 100, give_up)
