"""Overlapped fetch + de-bag against a moto S3 server on loopback, on real bags: same result as fetch then de-bag,
errors named, pinning, resume after SIGKILL, and proof that members are extracted before the download ends."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import boto3
import pytest

from harness.bags import make_bdrc_bag_zip, zip_entries
from harness.zip_edits import corrupt_one_byte, tamper_member
from onprem.finisher.debag.archive import debag_archive, temp_dir_for
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import (
    ChecksumMismatch,
    CorruptArchive,
    InsufficientSpace,
    IntegrityError,
    ObjectChanged,
    UnsafeMemberPath,
)
from onprem.finisher.fetch.checksum import RunningChecksum
from onprem.finisher.fetch.download import FetchRequest, FetchSettings, fetch_object
from onprem.finisher.fetch_debag.arriving import TAIL_PROBE
from onprem.finisher.fetch_debag.overlapped import FetchDebagJob
from onprem.finisher.progress import CountingProgress
from onprem.finisher.work.wiring import fetch_and_debag
from tests.integration.moto_endpoint import CREDENTIALS

REPO_ROOT = Path(__file__).resolve().parents[2]
RID = "W1NLM4700"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
PART = 64 * 1024
PARTS = FetchSettings(part_size=PART, max_concurrency=4, min_free_bytes=0)
DEBAG = DebagSettings(workers=3, fsync=False)
IMAGE = f"data/{RID}-I1KG1/images/{RID}-I1KG1_0005.tif"


def _bag(tmp_path: Path, **kwargs: object) -> Path:
    """A bag zip of ~12 parts (a fetched zip holds its key's work only): many members, each a few parts' worth."""
    return make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=24, file_size=30_000,
                             **kwargs)  # type: ignore[arg-type]


def _put(s3, bucket: str, body: bytes) -> FetchRequest:  # type: ignore[no-untyped-def]
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=body, ChecksumAlgorithm="SHA256")
    return FetchRequest(RID, bucket, KEY, len(body), put["ETag"], put.get("VersionId"))


def _gets(s3) -> list[str]:  # type: ignore[no-untyped-def]
    ranges: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: ranges.append(params["headers"]["Range"]))
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


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED], ids=["deflated", "stored"])
def test_overlapped_result_is_identical_to_fetch_then_debag(s3, bucket: str, tmp_path: Path,
                                                            compression: int) -> None:
    request = _put(s3, bucket, _bag(tmp_path, compression=compression).read_bytes())
    fetched = fetch_object(s3, request, tmp_path / "seq-dl", PARTS)
    (tmp_path / "seq").mkdir()
    sequential = debag_archive(fetched.path, RID, tmp_path / "seq", DEBAG, version_tag=fetched.etag)
    fetch_progress, debag_progress = CountingProgress(), CountingProgress()
    overlapped = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "ov-dl", tmp_path / "ov", PARTS, DEBAG,
                                 fetch_progress=fetch_progress, debag_progress=debag_progress))
    assert _tree(tmp_path / "ov") == _tree(tmp_path / "seq") and len(_tree(tmp_path / "ov")) > 24
    strip = [(w.work_rid, w.bag, w.algorithms, w.files, w.bytes, w.fixity_checked) for w in sequential.works]
    assert [(w.work_rid, w.bag, w.algorithms, w.files, w.bytes, w.fixity_checked)
            for w in overlapped.debag.works] == strip
    assert overlapped.fetch.path.read_bytes() == fetched.path.read_bytes()
    assert (overlapped.fetch.checksum_verified, overlapped.fetch.parts_downloaded) == ("sha256", fetched.parts_total)
    assert overlapped.debag.archive == overlapped.fetch.path
    assert fetch_progress.bytes_done == request.size and fetch_progress.finished
    assert debag_progress.files_done == 24 and debag_progress.finished
    assert sorted(p.name for p in (tmp_path / "ov-dl").iterdir()) == [f"{RID}.bag.zip", f"{RID}.bag.zip.fetched.json"]
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == [RID]


def test_members_are_extracted_before_the_download_ends(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path).read_bytes())
    last_in_order = (request.size - TAIL_PROBE) // PART - 1  # the tail's parts come first, this one last
    extracted = threading.Event()
    held: list[bool] = []

    class Extracted(CountingProgress):
        def advance(self, nbytes: int = 0, files: int = 0) -> None:
            super().advance(nbytes, files)
            if files:
                extracted.set()

    def hold_the_last_part(params: dict, **_: object) -> None:  # type: ignore[type-arg]
        if params["headers"]["Range"].startswith(f"bytes={last_in_order * PART}-"):
            held.append(extracted.wait(timeout=30))  # released at once when a member is already out

    s3.meta.events.register("before-call.s3.GetObject", hold_the_last_part)
    progress = Extracted()
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", PARTS, DEBAG,
                             debag_progress=progress))
    assert held == [True], "no member was extracted while the last part was still to download"
    assert progress.files_done == 24 and result.fetch.parts_downloaded == result.fetch.parts_total


def test_changed_member_bytes_are_named_and_nothing_is_placed(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    tamper_member(zip_path, f"{RID}.bag/{IMAGE}", offset=42)
    request = _put(s3, bucket, zip_path.read_bytes())
    staging = tmp_path / "staging"
    with pytest.raises(ChecksumMismatch, match=rf"^{RID}: checksum mismatch for {IMAGE} \(sha256 expected"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", staging, PARTS, DEBAG))
    assert [p.name for p in staging.iterdir() if not p.name.startswith(".debag-failed-")] == []
    assert any(p.name.startswith(f".debag-failed-{RID}") for p in staging.iterdir())


def test_corrupt_member_is_named_and_its_evidence_kept(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    corrupt_one_byte(zip_path, f"{RID}.bag/{IMAGE}", offset=100)
    request = _put(s3, bucket, zip_path.read_bytes())
    staging = tmp_path / "staging"
    with pytest.raises(CorruptArchive, match=rf"^{RID}: corrupt zip member {RID}.bag/{IMAGE}"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", staging, PARTS, DEBAG))
    assert not (staging / RID).exists()
    assert any(p.name.startswith(f".debag-failed-{RID}") for p in staging.iterdir())


def test_unsafe_member_stops_everything_before_any_extraction(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = zip_entries(tmp_path / "evil.zip", [(f"{RID}/images/ok.tif", os.urandom(300_000)),
                                                   ("../escape.txt", b"outside")])
    request = _put(s3, bucket, zip_path.read_bytes())
    staging = tmp_path / "staging"
    with pytest.raises(UnsafeMemberPath, match=rf"^{RID}: member '../escape.txt'"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", staging, PARTS, DEBAG))
    assert not staging.exists() or list(staging.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_payload_that_does_not_fit_beside_the_zip_is_refused_before_extraction(s3, bucket: str,
                                                                               tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    request = _put(s3, bucket, zip_path.read_bytes())
    room_for_the_zip_only = request.size + 1000  # the sequential fetch would accept this; the de-bag would not fit
    staging = tmp_path / "staging"
    with pytest.raises(InsufficientSpace, match=rf"^{RID}: .* bytes free") as caught:
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", staging, PARTS, DEBAG,
                        free_bytes=lambda _path: room_for_the_zip_only))
    assert caught.value.retry_after
    assert not (staging / RID).exists() and not temp_dir_for(staging, RID, request.etag).exists()


def test_object_overwritten_mid_download_raises_object_changed_and_discards_everything(s3, bucket: str,
                                                                                       tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path).read_bytes())  # unversioned: only IfMatch pins the bytes
    other = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1")
    gets = _gets(s3)

    def overwrite_after_three_parts(**_: object) -> None:
        if len(gets) == 3:
            other.put_object(Bucket=bucket, Key=KEY, Body=b"a newer bag")

    s3.meta.events.register("after-call.s3.GetObject", overwrite_after_three_parts)
    staging = tmp_path / "staging"
    with pytest.raises(ObjectChanged, match=f"^{RID}: .*overwritten"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", staging,
                                          FetchSettings(part_size=PART, max_concurrency=1, min_free_bytes=0), DEBAG))
    assert len(gets) < request.size // PART
    assert list((tmp_path / "dl").iterdir()) == []
    assert not staging.exists() or list(staging.iterdir()) == []


_CHILD = """
import json, sys, threading, time
from pathlib import Path
import boto3
from onprem.finisher.debag.archive import temp_dir_for
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.fetch.download import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.overlapped import FetchDebagJob
from onprem.finisher.work.wiring import fetch_and_debag
endpoint, dl, staging, bucket, key, etag, size = sys.argv[1:8]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
parts = Path(dl) / (Path(key).name + ".part.json")
members = temp_dir_for(Path(staging), "W1NLM4700", etag) / ".verified.jsonl"
def count(path, field=None):
    try:
        return len(json.loads(path.read_text())["done"]) if field else len(path.read_text().splitlines())
    except (OSError, ValueError):
        return 0
def hold_once_parts_and_members_are_done(**_):
    if count(parts, "done") >= 4:
        deadline = time.monotonic() + 30
        while count(members) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        threading.Event().wait()  # stay here until the test kills this process
s3.meta.events.register("before-call.s3.GetObject", hold_once_parts_and_members_are_done)
request = FetchRequest("W1NLM4700", bucket, key, int(size), etag, None)
fetch_and_debag(s3, FetchDebagJob(request, Path(dl), Path(staging),
                                  FetchSettings(part_size=64 * 1024, max_concurrency=1, min_free_bytes=0),
                                  DebagSettings(workers=2, fsync=True)))
"""


def test_resume_after_sigkill_redoes_neither_verified_parts_nor_verified_members(
    s3, bucket: str, endpoint: str, tmp_path: Path,
) -> None:
    # one bag, as BDRC zips are: its manifests lie in the zip's tail, so members are journaled as they verify
    zip_path = make_bdrc_bag_zip(tmp_path / "build", files_per_work=24, file_size=30_000)
    request = _put(s3, bucket, zip_path.read_bytes())
    dl, staging = tmp_path / "dl", tmp_path / "staging"
    part_journal = dl / f"{RID}.bag.zip.part.json"
    member_journal = temp_dir_for(staging, RID, request.etag) / ".verified.jsonl"

    def progress_made() -> bool:
        try:
            return (len(json.loads(part_journal.read_text())["done"]) >= 4
                    and len(member_journal.read_text().splitlines()) >= 2)
        except (OSError, ValueError):
            return False

    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, endpoint, str(dl), str(staging), bucket, KEY, str(request.etag),
         str(request.size)], cwd=REPO_ROOT, env={**os.environ, **CREDENTIALS},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None and not progress_made():
            time.sleep(0.05)
        assert child.poll() is None, "the child finished or died before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    parts_before = set(json.loads(part_journal.read_text())["done"])
    members_before = {json.loads(line)["name"] for line in member_journal.read_text().splitlines()}
    assert len(parts_before) >= 4 and len(members_before) >= 2

    gets = _gets(s3)
    progress = CountingProgress()
    result = fetch_and_debag(s3, FetchDebagJob(request, dl, staging, PARTS, DEBAG, debag_progress=progress))
    assert result.fetch.parts_resumed == len(parts_before)
    assert len(gets) == result.fetch.parts_downloaded == result.fetch.parts_total - len(parts_before)
    resumed_ranges = {f"bytes={n * PART}-{min((n + 1) * PART, request.size) - 1}" for n in parts_before}
    assert resumed_ranges.isdisjoint(gets)
    assert result.debag.members_resumed == len(members_before)
    assert progress.files_done == 24 - len(members_before)
    assert result.fetch.checksum_verified == "sha256" and not part_journal.exists()
    assert sorted(p.name for p in staging.iterdir()) == [RID]


def test_a_zip_already_downloaded_is_debagged_from_disk(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _bag(tmp_path).read_bytes())
    fetch_object(s3, request, tmp_path / "dl", PARTS)
    gets = _gets(s3)
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", PARTS, DEBAG))
    assert gets == [] and result.fetch.parts_downloaded == 0
    assert [w.work_rid for w in result.debag.works] == [RID]


def test_whole_object_checksum_mismatch_places_nothing_and_discards_the_download(
    s3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = _put(s3, bucket, _bag(tmp_path).read_bytes())
    monkeypatch.setattr(RunningChecksum, "result", lambda _self: "bm90IHRoZSBvYmplY3Q=")
    staging = tmp_path / "staging"
    with pytest.raises(IntegrityError, match=rf"^{RID}: sha256 mismatch for {RID}.bag.zip"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", staging, PARTS, DEBAG))
    assert list((tmp_path / "dl").iterdir()) == []
    assert not (staging / RID).exists()
    assert any(p.name.startswith(f".debag-failed-{RID}") for p in staging.iterdir())


#: one GET of the whole object written to its .part file (the zip on disk; stream_debag has its own tests)
ONE_STREAM = FetchSettings(part_size=2**30, max_concurrency=1, min_free_bytes=0, stream=False)


def _big_bag(tmp_path: Path) -> Path:
    """A zip whose single part is far larger than its tail: the tail is read ahead, then one stream."""
    return make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=12, file_size=500_000)


def test_one_stream_overlaps_fetch_and_debag(s3, bucket: str, tmp_path: Path) -> None:
    request = _put(s3, bucket, _big_bag(tmp_path).read_bytes())
    extracted, held = threading.Event(), []
    ranges: list[str | None] = []

    class Extracted(CountingProgress):
        def advance(self, nbytes: int = 0, files: int = 0) -> None:
            super().advance(nbytes, files)
            if files:
                extracted.set()

    def hold_the_stream(response: dict, **_: object) -> None:  # type: ignore[type-arg]
        body = response["Body"]
        real_read, sent = body.read, [0]
        ranges.append(response.get("ContentRange"))

        def read(amt: int | None = None) -> bytes:
            # held a third of the way: the stream is then 1 MiB chunks short of the tail, which is written ahead
            if response.get("ContentRange") is None and sent[0] >= request.size // 3 and not held:
                held.append(extracted.wait(timeout=30))  # a member must come out while the stream is held
            chunk = real_read(amt)
            sent[0] += len(chunk)
            return chunk

        body.read = read

    s3.meta.events.register("after-call.s3.GetObject", lambda parsed, **kw: hold_the_stream(parsed))
    progress = Extracted()
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", ONE_STREAM, DEBAG,
                             debag_progress=progress))
    assert held == [True], "no member was extracted while the single stream was held"
    # the tail read ahead beside one GET of the whole object
    assert sorted(ranges, key=str) == [None, f"bytes {request.size - TAIL_PROBE}-{request.size - 1}/{request.size}"]
    assert result.fetch.checksum_verified == "sha256" and progress.files_done == 12


def test_without_the_tail_read_ahead_one_stream_is_the_only_get(s3, bucket: str, tmp_path: Path) -> None:
    """``tail_ahead=False`` (servers where a ranged GET reads the whole object): one GET, de-bag from its tail."""
    request = _put(s3, bucket, _big_bag(tmp_path).read_bytes())
    ranges: list[str | None] = []
    s3.meta.events.register("before-call.s3.GetObject",
                            lambda params, **_: ranges.append(params["headers"].get("Range")))
    no_read_ahead = FetchSettings(part_size=2**30, max_concurrency=1, min_free_bytes=0, tail_ahead=False,
                                  stream=False)
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "staging", no_read_ahead, DEBAG))
    assert ranges == [None]
    assert result.fetch.checksum_verified == "sha256" and result.fetch.parts_downloaded == 1
    (tmp_path / "seq").mkdir()
    debag_archive(result.fetch.path, RID, tmp_path / "seq", DEBAG, version_tag=result.fetch.etag)
    assert _tree(tmp_path / "staging") == _tree(tmp_path / "seq") and len(_tree(tmp_path / "seq")) >= 12


def test_the_full_object_checksum_needs_no_second_read_of_the_file(s3, bucket: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    request = _put(s3, bucket, _big_bag(tmp_path).read_bytes())
    checksums: list[RunningChecksum] = []
    real_init = RunningChecksum.__init__
    monkeypatch.setattr(RunningChecksum, "__init__",
                        lambda self, *a: real_init(self, *a) or checksums.append(self))  # type: ignore[func-returns-value]
    in_order = FetchSettings(part_size=PART, max_concurrency=1, min_free_bytes=0)
    assert fetch_object(s3, request, tmp_path / "parts", in_order).checksum_verified == "sha256"
    assert fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "dl", tmp_path / "st", ONE_STREAM,
                           DEBAG)).fetch.checksum_verified == "sha256"
    parts, stream = checksums
    assert (parts.vouched, parts.position, parts.bytes_read_back) == (False, request.size, 0)  # hashed as written
    assert stream.vouched and stream.bytes_read_back == 0  # botocore checked the one whole-object GET


def test_a_whole_object_get_that_fails_botocores_checksum_is_an_integrity_error(
    s3, bucket: str, tmp_path: Path,
) -> None:
    request = _put(s3, bucket, _big_bag(tmp_path).read_bytes())

    def flip_a_byte(response: dict, **_: object) -> None:  # type: ignore[type-arg]
        if response.get("ContentRange") is None:
            raw = response["Body"]._raw_stream  # the bytes botocore hashes are these, one of them changed
            real_read = raw.read

            def read(amt: int | None = None, *args: object, **kwargs: object) -> bytes:
                chunk = real_read(amt, *args, **kwargs)
                return bytes([chunk[0] ^ 1]) + chunk[1:] if chunk else chunk

            raw.read = read

    s3.meta.events.register("after-call.s3.GetObject", lambda parsed, **kw: flip_a_byte(parsed))
    with pytest.raises(IntegrityError, match=rf"^{RID}: sha256 mismatch for {RID}.bag.zip while downloading"):
        fetch_object(s3, request, tmp_path / "dl", ONE_STREAM)
