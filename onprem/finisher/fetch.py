"""Fetch: a parallel, resumable, verified download of one restored object, pinned to its ETag and version.

Our own ranged GETs on boto3 rather than s3transfer's ``download_file``: s3transfer cannot resume a download
from the parts already on disk, which matters for 20 GB works on a worker that may be restarted. Each part
is one task (GET ``Range`` with ``IfMatch`` + ``VersionId`` → ``pwrite`` at its offset → fsync → journal),
run on a bounded executor; the first failure cancels the rest.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from onprem.finisher.errors import InsufficientSpace, IntegrityError, ObjectChanged, ObjectMissing
from onprem.finisher.fetch_checksum import file_checksum, full_object_checksum
from onprem.finisher.fetch_journal import JOURNAL_SUFFIX, PART_SUFFIX, DownloadIdentity, FetchJournal
from onprem.finisher.fetch_s3 import download_part, head_object
from onprem.finisher.progress import NullProgress, Progress
from onprem.finisher.staging_sweep import sweep_orphans

__all__ = ["FetchRequest", "FetchResult", "FetchSettings", "fetch_object", "sweep_orphans"]

logger = logging.getLogger(__name__)

DONE_SUFFIX = ".fetched.json"
#: seconds before a message that failed for lack of space is retried
SPACE_RETRY_AFTER = 900


@dataclass(frozen=True)
class FetchRequest:
    """The object a RestoredWork message names; ``etag``/``version_id`` pin the bytes (None: pin what HEAD saw)."""

    work_rid: str
    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None


@dataclass(frozen=True)
class FetchSettings:
    part_size: int = 64 * 2**20
    max_concurrency: int = 8
    #: free bytes that must remain on the staging filesystem after the download
    min_free_bytes: int = 2 * 2**30
    verify_checksum: bool = True
    #: tries of one part on a transient error (connection reset, short body, 5xx after botocore's retries)
    part_attempts: int = 3


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    etag: str
    version_id: str | None
    #: the S3 checksum algorithm verified over the whole file, None when none could be
    checksum_verified: str | None
    checksum_note: str
    parts_total: int
    parts_downloaded: int
    parts_resumed: int


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def fetch_object(
    s3_client: Any, request: FetchRequest, dest_dir: Path, settings: FetchSettings | None = None,
    progress: Progress | None = None, *, free_bytes: Callable[[Path], int] = _free_bytes,
) -> FetchResult:
    """Download ``request``'s object to ``dest_dir/<key name>``, resuming from verified parts on disk.

    Raises RestoreInProgress / RestoreExpired (HEAD or GET say the restored copy is not readable),
    ObjectChanged (ETag, version or size differ from the message), ObjectMissing, InsufficientSpace,
    IntegrityError (size or full-object checksum wrong: the partial download is discarded), TransferError.
    """
    settings = settings or FetchSettings()
    progress = progress or NullProgress()
    rid = request.work_rid
    head = head_object(s3_client, request)
    etag = _quoted(request.etag or head["ETag"])
    version_id = request.version_id or head.get("VersionId")
    size = int(head["ContentLength"])
    checksum, checksum_note = full_object_checksum(head) if settings.verify_checksum else (None, "not requested")
    identity = DownloadIdentity(request.bucket, request.key, etag, version_id, size, settings.part_size)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / PurePosixPath(request.key).name
    parts_total = max(1, -(-size // settings.part_size))
    finished = _already_fetched(dest, identity)
    if finished is not None:
        logger.info("%s: %s already downloaded and verified", rid, dest.name, extra={"work_rid": rid})
        return FetchResult(dest, size, etag, version_id, finished.get("checksum_verified"),
                           finished.get("checksum_note", ""), parts_total, 0, parts_total)
    part_path = dest.with_name(dest.name + PART_SUFFIX)
    journal = FetchJournal.load(dest.with_name(dest.name + JOURNAL_SUFFIX), identity)
    if journal.done and (not part_path.is_file() or part_path.stat().st_size != size):
        journal = FetchJournal(journal.path, identity)  # the journal outlived its .part: nothing to resume
    if not journal.done:
        part_path.unlink(missing_ok=True)
    done_bytes = sum(_part_range(n, size, settings.part_size)[1] - _part_range(n, size, settings.part_size)[0]
                     for n in journal.done)
    _check_space(rid, dest_dir, size - done_bytes, settings.min_free_bytes, free_bytes)
    todo = [n for n in range(parts_total) if n not in journal.done]
    logger.info("%s: downloading %s (%d bytes, %d/%d parts to fetch)", rid, request.key, size, len(todo),
                parts_total, extra={"work_rid": rid})
    progress.start(size, 1)
    progress.advance(done_bytes)
    fd = os.open(part_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
        _download_parts(s3_client, request, identity, fd, todo, journal, settings, progress)
        os.fsync(fd)
    except (ObjectChanged, ObjectMissing):
        journal.remove()  # parts of a version that is gone can never be used
        part_path.unlink(missing_ok=True)
        raise
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise InsufficientSpace(rid, f"disk full while writing {part_path}", retry_after=SPACE_RETRY_AFTER) from err
        raise
    finally:
        os.close(fd)
    checksum_verified = _verify(rid, part_path, size, checksum, journal)
    os.replace(part_path, dest)
    _write_done_marker(dest, identity, checksum_verified, checksum_note)
    journal.remove()
    progress.advance(files=1)
    progress.finish()
    logger.info("%s: downloaded %s (%s)", rid, dest.name, checksum_note, extra={"work_rid": rid})
    return FetchResult(dest, size, etag, version_id, checksum_verified, checksum_note, parts_total, len(todo),
                       parts_total - len(todo))


def _part_range(part_number: int, size: int, part_size: int) -> tuple[int, int]:
    """``[start, end)`` of a part."""
    start = part_number * part_size
    return start, min(start + part_size, size)


def _check_space(rid: str, dest_dir: Path, needed: int, reserve: int, free_bytes: Callable[[Path], int]) -> None:
    free = free_bytes(dest_dir)
    if free - needed < reserve:
        raise InsufficientSpace(rid, f"{dest_dir} has {free} bytes free; the download needs {needed} more and "
                                     f"{reserve} must stay free", retry_after=SPACE_RETRY_AFTER)


def _download_parts(s3_client: Any, request: FetchRequest, identity: DownloadIdentity, fd: int, todo: list[int],
                    journal: FetchJournal, settings: FetchSettings, progress: Progress) -> None:
    if not todo:
        return
    cancelled = threading.Event()

    def task(part_number: int) -> None:
        start, end = _part_range(part_number, identity.size, identity.part_size)
        download_part(s3_client, request, identity, fd, start, end, progress, cancelled, settings.part_attempts)
        os.fsync(fd)
        journal.mark_done(part_number)

    with ThreadPoolExecutor(max_workers=max(1, settings.max_concurrency), thread_name_prefix="fetch") as pool:
        pending = {pool.submit(task, n) for n in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                cancelled.set()
                for future in pending:
                    future.cancel()
                raise failed[0].exception()  # type: ignore[misc]


def _verify(rid: str, part_path: Path, size: int, checksum: Any, journal: FetchJournal) -> str | None:
    actual = part_path.stat().st_size
    if actual != size:
        journal.remove()
        part_path.unlink(missing_ok=True)
        raise IntegrityError(rid, f"downloaded {actual} bytes of {part_path.name}, expected {size}")
    if checksum is None:
        return None
    got = file_checksum(part_path, checksum.algorithm)
    if got != checksum.value:
        journal.remove()
        part_path.unlink(missing_ok=True)
        raise IntegrityError(rid, f"{checksum.algorithm} mismatch for {part_path.name.removesuffix(PART_SUFFIX)} "
                                  f"(expected {checksum.value}, got {got}): download discarded")
    return checksum.algorithm


def _already_fetched(dest: Path, identity: DownloadIdentity) -> dict[str, Any] | None:
    marker = dest.with_name(dest.name + DONE_SUFFIX)
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stored.get("identity") == asdict(identity) and dest.is_file() and dest.stat().st_size == identity.size:
        return stored
    return None


def _write_done_marker(dest: Path, identity: DownloadIdentity, checksum_verified: str | None, note: str) -> None:
    marker = dest.with_name(dest.name + DONE_SUFFIX)
    marker.write_text(json.dumps({"identity": asdict(identity), "checksum_verified": checksum_verified,
                                  "checksum_note": note}), encoding="utf-8")

