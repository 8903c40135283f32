"""The one fetch path against a moto S3 server on loopback: ranged GETs de-bagged as they arrive, the zip never
written; same result as a local de-bag, the full-object checksum combined from the ranges, pinning, space."""

from __future__ import annotations

import hashlib
import itertools
import zipfile
from pathlib import Path

import pytest

from harness.bags import make_bdrc_bag_zip
from harness.zip_edits import tamper_member
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.directory import TAIL_READ
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.staging import temp_dir_for
from onprem.finisher.errors import ChecksumMismatch, InsufficientSpace, ObjectChanged
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, fetch_and_debag
from onprem.finisher.progress import CountingProgress

RID = "W1NLM4700"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
PART = 64 * 1024
SETTINGS = FetchSettings(part_size=PART, max_concurrency=4, min_free_bytes=0)
DEBAG = DebagSettings(workers=2, fsync=False)
IMAGE = f"data/{RID}-I1KG1/images/{RID}-I1KG1_0005.tif"


def _bag(tmp_path: Path, **kwargs: object) -> Path:
    return make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=24, file_size=30_000,
                             **kwargs)  # type: ignore[arg-type]


def _put(s3, bucket: str, body: bytes, algorithm: str = "CRC64NVME") -> FetchRequest:  # type: ignore[no-untyped-def]
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=body, ChecksumAlgorithm=algorithm)
    return FetchRequest(RID, bucket, KEY, len(body), put["ETag"], put.get("VersionId"))


def _gets(s3) -> list[str]:  # type: ignore[no-untyped-def]
    ranges: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: ranges.append(params["headers"]["Range"]))
    return ranges


def _tree(root: Path) -> dict[str, tuple[str | None, float]]:
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() and (len(rel.parts) == 1 or rel.name.endswith(".bag")):
            continue  # made by the de-bag, dated when it ran
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        found[rel.as_posix()] = (digest, path.stat().st_mtime)
    return found


def test_ranges_give_the_local_debag_result_reading_each_byte_once(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = _bag(tmp_path, compression=zipfile.ZIP_STORED)
    request = _put(s3, bucket, zip_path.read_bytes())
    gets = _gets(s3)
    fetch_progress, debag_progress = CountingProgress(), CountingProgress()
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "staging", SETTINGS, DEBAG,
                                               fetch_progress=fetch_progress, debag_progress=debag_progress))
    local = debag_archive(zip_path, RID, tmp_path / "local", DEBAG)
    assert _tree(tmp_path / "staging" / RID) == _tree(tmp_path / "local" / RID)
    assert result.fetch.checksum_verified == "crc64nvme"
    assert result.debag.works[0].files == local.works[0].files == 24
    assert not list((tmp_path / "staging").glob(".debag-*")) and not list(tmp_path.rglob("*.bag.zip.part"))
    size = zip_path.stat().st_size
    assert gets[0] == f"bytes={max(0, size - TAIL_READ)}-{size - 1}"  # the plan: one read of the tail
    spans = sorted((int(r.split("=")[1].split("-")[0]), int(r.split("-")[1]) + 1) for r in gets[1:])
    assert all(end - start <= PART for start, end in spans)  # never a GET longer than a part
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # no byte read twice
    assert fetch_progress.bytes_done <= size and debag_progress.files_done == 24


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA256"])
def test_full_object_checksums_combine_from_the_ranges_or_are_said_not_verified(
        s3, bucket: str, tmp_path: Path, algorithm: str) -> None:
    zip_path = _bag(tmp_path)
    request = _put(s3, bucket, zip_path.read_bytes(), algorithm)
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "staging", SETTINGS, DEBAG))
    if algorithm == "SHA256":
        assert result.fetch.checksum_verified is None and "cannot be combined" in result.fetch.checksum_note
    else:
        assert result.fetch.checksum_verified == algorithm.lower()
    assert (tmp_path / "staging" / RID / f"{RID}.bag" / "bagit.txt").is_file()


def test_a_changed_member_is_refused_naming_the_file_nothing_placed(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    tamper_member(zip_path, f"{RID}.bag/{IMAGE}")
    request = _put(s3, bucket, zip_path.read_bytes())
    with pytest.raises(ChecksumMismatch, match=IMAGE.split("/")[-1]):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "staging", SETTINGS, DEBAG))
    assert not (tmp_path / "staging" / RID).exists()
    assert list((tmp_path / "staging").glob(".debag-failed-*"))


def test_object_overwritten_after_head_is_object_changed_and_purged(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    request = _put(s3, bucket, zip_path.read_bytes())
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"another version")
    with pytest.raises(ObjectChanged):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "staging", SETTINGS, DEBAG))
    assert not temp_dir_for(tmp_path / "staging", RID, request.etag).exists()


def test_too_little_space_for_the_payload_fails_before_any_payload_get(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = _bag(tmp_path)
    request = _put(s3, bucket, zip_path.read_bytes())
    gets = _gets(s3)
    with pytest.raises(InsufficientSpace, match="payload needs"):
        fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "staging", SETTINGS, DEBAG,
                                          free_bytes=lambda _path: 1000))
    assert len(gets) == 1  # the tail only


def test_a_multipart_composite_checksum_is_combined_per_part_from_the_ranges(s3, bucket: str, tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path / "build", rids=(RID,), files_per_work=11, file_size=1_000_000)
    body = zip_path.read_bytes()
    part = 5 * 2**20
    upload = s3.create_multipart_upload(Bucket=bucket, Key=KEY, ChecksumAlgorithm="CRC32")
    parts = []
    for number, start in enumerate(range(0, len(body), part), start=1):
        sent = s3.upload_part(Bucket=bucket, Key=KEY, UploadId=upload["UploadId"], PartNumber=number,
                              Body=body[start:start + part], ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": number, "ETag": sent["ETag"], "ChecksumCRC32": sent["ChecksumCRC32"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key=KEY, UploadId=upload["UploadId"],
                                        MultipartUpload={"Parts": parts})
    assert len(parts) == 3 and done["ETag"].endswith('-3"')
    request = FetchRequest(RID, bucket, KEY, len(body), done["ETag"], None)  # unversioned
    fetch = FetchSettings(part_size=2**20, max_concurrency=4, min_free_bytes=0)  # segments across part boundaries
    result = fetch_and_debag(s3, FetchDebagJob(request, tmp_path / "staging", fetch, DEBAG))
    assert result.fetch.checksum_verified == "crc32"
    assert result.fetch.checksum_note == f"crc32 composite checksum of 3 parts of {part} bytes"
    assert result.debag.works[0].files == 11
