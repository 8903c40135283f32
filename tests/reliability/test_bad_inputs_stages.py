"""Every bad restored object, fetched and de-bagged from a moto bucket (the one fetch path): the named error, nothing
staged.

The same catalog goes through the whole worker (message → DLQ with its reason, ledger cause) in
test_bad_inputs_worker.py; this file pins the stage-level classification each of those outcomes rests on.
"""

from __future__ import annotations

import errno
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.bags import make_bdrc_bag_zip
from onprem.finisher.debag import member_stream as debag_extract
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import InsufficientSpace, PermanentError, RetryableError
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, FetchedAndDebagged, fetch_and_debag
from tests.reliability.bad_inputs import BAD_ZIPS, BadZip, unicode_names_zip

FETCH = FetchSettings(part_size=256 * 1024, max_concurrency=2, min_free_bytes=0)


def _stage(s3, bucket: str, zip_path: Path, rid: str) -> FetchRequest:  # type: ignore[no-untyped-def]
    key = f"Archive0/00/{rid}/{rid}.bag.zip"
    put = s3.put_object(Bucket=bucket, Key=key, Body=zip_path.read_bytes(), ChecksumAlgorithm="SHA256")
    return FetchRequest(rid, bucket, key, zip_path.stat().st_size, put["ETag"], put["VersionId"])


def _fetch_and_debag(s3, request: FetchRequest, staging: Path, settings: DebagSettings,  # type: ignore[no-untyped-def]
                     **job: object) -> FetchedAndDebagged:
    return fetch_and_debag(s3, FetchDebagJob(request, staging, FETCH, settings, version_tag="v1",
                                             **job))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", BAD_ZIPS.values(), ids=BAD_ZIPS.keys())
def test_bad_zip_is_rejected_with_its_named_error_and_nothing_staged(
    s3, bucket: str, tmp_path: Path, case: BadZip,
) -> None:
    rid = f"W9{uuid.uuid4().hex[:6].upper()}"
    request = _stage(s3, bucket, case.build(tmp_path / "build", rid), rid)
    staging = tmp_path / "staging"
    staging.mkdir()
    settings = DebagSettings(workers=2, fsync=False, require_strong_checksums=case.strong_checksums)
    with pytest.raises(case.error) as caught:
        _fetch_and_debag(s3, request, staging, settings)
    assert type(caught.value) is case.error and isinstance(caught.value, PermanentError)
    assert str(caught.value).startswith(f"{rid}: ") and caught.value.cause == case.cause
    # nothing in the staging layout, no resumable temp dir: only evidence of a failed de-bag may remain
    assert [p.name for p in staging.iterdir() if not p.name.startswith(".debag-failed-")] == []


def test_unicode_names_go_through_intact(s3, bucket: str, tmp_path: Path) -> None:
    zip_path, names = unicode_names_zip(tmp_path / "build", "W9UNI01")
    request = _stage(s3, bucket, zip_path, "W9UNI01")
    staging = tmp_path / "staging"
    staging.mkdir()
    work = _fetch_and_debag(s3, request, staging, DebagSettings(workers=2, fsync=False)).debag.works[0]
    assert work.fixity_checked and all((staging / "W9UNI01" / name).is_file() for name in names)


@pytest.fixture
def small_staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 1 MiB filesystem (tmpfs; root can mount one here) or, where mounting is refused, a 1 MiB write limit."""
    folder = tmp_path / "small-staging"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                                 capture_output=True, check=False).returncode == 0
    except OSError:
        mounted = False
    if not mounted:
        monkeypatch.setattr(debag_extract, "open", _limited_open(2**20), raising=False)
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def _limited_open(limit: int):  # type: ignore[no-untyped-def]
    written = [0]

    class LimitedFile:
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            self._file = open(*args, **kwargs)  # closed by __exit__

        def write(self, chunk: bytes) -> int:
            written[0] += len(chunk)
            if written[0] > limit:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return self._file.write(chunk)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self._file, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc) -> None:  # type: ignore[no-untyped-def]
            self._file.close()

    return LimitedFile


def test_disk_full_during_extract_is_retryable_and_nothing_is_placed(
    s3, bucket: str, tmp_path: Path, small_staging: Path,
) -> None:
    # a 2 MiB payload: twice what the staging filesystem holds
    zip_path = make_bdrc_bag_zip(tmp_path / "build", rids=["W9FULL1"], files_per_work=4, file_size=512 * 1024)
    request = _stage(s3, bucket, zip_path, "W9FULL1")
    with pytest.raises(InsufficientSpace) as caught:  # the room check told otherwise: the disk fills while writing
        _fetch_and_debag(s3, request, small_staging, DebagSettings(workers=2, fsync=False),
                         free_bytes=lambda _path: 2**40)
    assert isinstance(caught.value, RetryableError) and str(caught.value).startswith("W9FULL1: disk full")
    assert not (small_staging / "W9FULL1").exists()
