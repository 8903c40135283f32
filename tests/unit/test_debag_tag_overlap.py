"""The tag files' segments and the payload's in flight together: no payload segment waits for the manifests'
round trip, and a manifest refused on arrival stops the payload's reads instead of letting them run on."""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.bags import make_bdrc_bag_zip
from harness.zip_edits import edit_tag_file
from onprem.finisher.debag.byte_source import FileSource
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.ranged import RangeReading, debag_source
from onprem.finisher.debag.staging import DebagJob
from onprem.finisher.errors import UnsafeManifestPath

RID = "W1NLM4700"
SETTINGS = DebagSettings(workers=2, fsync=False)


class _TagsHeld(FileSource):
    """A local zip whose tag files' ranges are held until a payload range is opened (or ``hold_s`` passed), each
    chunk taking ``delay_s``; records the bytes read."""

    def __init__(self, path: Path, hold_s: float = 5.0, delay_s: float = 0.0) -> None:
        super().__init__(path)
        self.hold_s, self.delay_s = hold_s, delay_s
        with zipfile.ZipFile(path) as zf:
            self.tag_offsets = [i.header_offset for i in zf.infolist()
                                if i.filename.count("/") == 1 and not i.is_dir()]  # {RID}.bag/<tag file>
        self.payload_opened = threading.Event()
        self.held_until_timeout = False
        self.read_bytes = 0
        self._lock = threading.Lock()

    def read(self, start: int, end: int) -> bytes:
        return b"".join(FileSource.chunks(self, start, end))  # the tail, for the plan: never held

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        if any(start <= offset < end for offset in self.tag_offsets):
            self.held_until_timeout |= not self.payload_opened.wait(self.hold_s)
        else:
            self.payload_opened.set()
        for chunk in super().chunks(start, end):
            time.sleep(self.delay_s)
            with self._lock:
                self.read_bytes += len(chunk)
            yield chunk


def test_the_payload_segments_are_read_while_the_tag_files_are_in_flight(tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=12, file_size=40_000)
    reading = RangeReading(part_size=64 * 1024, concurrency=4)
    source = _TagsHeld(zip_path)
    started = time.monotonic()
    result = debag_source(source, DebagJob(RID, tmp_path / "staging", SETTINGS, "etag1"), reading)
    assert not source.held_until_timeout, "the payload waited for the tag files"
    assert time.monotonic() - started < 4
    assert result.works[0].fixity_checked and result.works[0].files == 12


def test_a_manifest_refused_on_arrival_stops_the_payload_reads(tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=40, file_size=100_000)
    edit_tag_file(zip_path, f"{RID}.bag/manifest-sha256.txt",
                  lambda text: text + b"0" * 64 + b"  data/../../../etc/passwd\n")
    reading = RangeReading(part_size=200_000, concurrency=2)
    source = _TagsHeld(zip_path, hold_s=0, delay_s=0.05)  # ~1 s per payload segment: the refusal comes first
    with pytest.raises(UnsafeManifestPath) as caught:
        debag_source(source, DebagJob(RID, tmp_path / "staging", SETTINGS, "etag1"), reading)
    assert caught.value.work_rid == RID
    assert source.read_bytes < zip_path.stat().st_size // 2, "the payload was read on after the refusal"
