"""Fetch: a parallel, resumable, verified download of one restored object, pinned to its ETag and version.

Our own ranged GETs on boto3 rather than s3transfer's ``download_file``: s3transfer cannot resume a download
from the parts already on disk, which matters for 20 GB works on a worker that may be restarted. Each part
is one task (GET ``Range`` with ``IfMatch`` + ``VersionId`` → ``pwrite`` at its offset → fsync → journal),
run on a bounded executor; the first failure cancels the rest. A part that is the whole object is one GET
without ``Range`` (``ChecksumMode=ENABLED``): the fastest transfer from a fast store, one checksum check.

The full-object checksum is computed while the bytes arrive (``RunningChecksum``: chunks written at the
hashed prefix's end are hashed from memory; parts that arrived out of order are read back once, from the page
cache, as the prefix reaches them), or taken from botocore's own check of a whole-object GET: the finished
file is never read again for it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from onprem.finisher.errors import (
    InsufficientSpace,
    IntegrityError,
    ObjectChanged,
    ObjectMissing,
    PartCancelled,
)
from onprem.finisher.fetch.checksum import ObjectChecksum, RunningChecksum, full_object_checksum
from onprem.finisher.fetch.journal import JOURNAL_SUFFIX, PART_SUFFIX, DownloadIdentity, FetchJournal
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch.s3 import PartWrite, download_part, head_object, require_pinned
from onprem.finisher.progress import NullProgress, Progress

__all__ = ["Download", "FetchRequest", "FetchResult", "FetchSettings", "check_space", "complete_download",
           "discard_partial", "download_parts", "fetch_object", "finish_download", "open_download",
           "verify_download"]

logger = logging.getLogger(__name__)

DONE_SUFFIX = ".fetched.json"
#: seconds before a message that failed for lack of space is retried
SPACE_RETRY_AFTER = 900


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


@dataclass(frozen=True)
class Download:
    """A download under way (from ``open_download``): its pinned identity, files, journal and checksum."""

    request: FetchRequest
    identity: DownloadIdentity
    dest: Path
    part_path: Path
    journal: FetchJournal
    checksum: ObjectChecksum | None
    checksum_note: str
    #: the full-object checksum, computed while the parts arrive (None: not verifiable or not requested)
    running: RunningChecksum | None = None

    @property
    def parts_total(self) -> int:
        return max(1, -(-self.identity.size // self.identity.part_size))

    def part_range(self, part_number: int) -> tuple[int, int]:
        return _part_range(part_number, self.identity.size, self.identity.part_size)

    def parts_covering(self, start: int, end: int) -> range:
        """Part numbers holding any byte of ``[start, end)``."""
        part_size = self.identity.part_size
        return range(start // part_size, min(-(-end // part_size), self.parts_total)) if end > start else range(0)

    def done_bytes(self) -> int:
        return sum(self.part_range(n)[1] - self.part_range(n)[0] for n in self.journal.done)

    def contiguous_done_end(self) -> int:
        """The end of the prefix of the file made of parts already written and journaled."""
        done, n = set(self.journal.done), 0
        while n in done:
            n += 1
        return min(n * self.identity.part_size, self.identity.size)


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
    download = open_download(s3_client, request, dest_dir, settings, free_bytes=free_bytes)
    if isinstance(download, FetchResult):
        return download
    todo = [n for n in range(download.parts_total) if n not in download.journal.done]
    progress.start(download.identity.size, 1)
    progress.advance(download.done_bytes())
    download_parts(s3_client, download, todo, settings, progress)
    return finish_download(download, len(todo), progress)


def open_download(s3_client: Any, request: FetchRequest, dest_dir: Path, settings: FetchSettings, *,
                  free_bytes: Callable[[Path], int] = _free_bytes) -> Download | FetchResult:
    """Pin to the attempt's HEAD (``request.head``, else HEAD here), load the part journal and check space; a
    FetchResult when the file is already downloaded. Raises what ``require_pinned`` raises.

    When it returns a Download, the ``.part`` file exists at the object's full size.
    """
    rid = request.work_rid
    head = require_pinned(request, request.head or head_object(s3_client, request))
    request = replace(request, head=head)  # a Download re-opened from its request pins to the same HEAD
    etag = _quoted(request.etag or head.etag)
    version_id = request.version_id or head.version_id
    size = head.size
    checksum, checksum_note = (full_object_checksum({"ETag": head.etag, **head.checksums})
                               if settings.verify_checksum else (None, "not requested"))
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
    running = RunningChecksum(checksum, size) if checksum is not None else None
    download = Download(request, identity, dest, part_path, journal, checksum, checksum_note, running)
    check_space(rid, dest_dir, size - download.done_bytes(), settings.min_free_bytes, free_bytes)
    logger.info("%s: downloading %s (%d bytes, %d/%d parts to fetch)", rid, request.key, size,
                parts_total - len(journal.done), parts_total, extra={"work_rid": rid})
    fd = os.open(part_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return download


def download_parts(s3_client: Any, download: Download, parts: list[int], settings: FetchSettings,
                   progress: Progress, *, on_part_done: Callable[[int], None] | None = None,
                   on_written: Callable[[int, int], None] | None = None,
                   cancelled: threading.Event | None = None, keep_partial: bool = False) -> None:
    """Download ``parts`` (started in this order) into the ``.part`` file; each is fsynced, then journaled.

    ``on_part_done(n)`` is called once part n is journaled, ``on_written(part_start, offset)`` as each chunk of
    a part is written (the part's bytes up to ``offset`` are in the file). ObjectChanged/ObjectMissing discard
    the partial download (unless ``keep_partial``: the caller, still reading it, discards it); a full disk raises
    InsufficientSpace. Setting ``cancelled`` stops the parts (PartCancelled).
    """
    rid = download.request.work_rid
    fd = os.open(download.part_path, os.O_RDWR)
    try:
        _download_parts(s3_client, download, fd, parts, settings, progress, on_part_done, on_written,
                        cancelled or threading.Event())
        os.fsync(fd)
    except (ObjectChanged, ObjectMissing) as err:  # Cleanup.PURGE: parts of a version that is gone are never used
        if err.cleanup.removes_download and not keep_partial:
            discard_partial(download)
        raise
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise InsufficientSpace(rid, f"disk full while writing {download.part_path}",
                                    retry_after=SPACE_RETRY_AFTER) from err
        raise
    finally:
        os.close(fd)


def finish_download(download: Download, parts_downloaded: int, progress: Progress) -> FetchResult:
    """Verify size and full-object checksum, rename ``.part`` to the final name, write the done marker."""
    return complete_download(download, verify_download(download), parts_downloaded, progress)


def verify_download(download: Download, *, keep_partial: bool = False) -> str | None:
    """Size and full-object checksum of the ``.part`` file: the algorithm verified (None: none could be).

    IntegrityError when either is wrong; the partial download and its journal are then discarded (unless
    ``keep_partial``: the caller discards them once nothing reads the file any more).
    """
    try:
        return _verify(download.request.work_rid, download.part_path, download.identity.size, download.running)
    except IntegrityError as err:  # Cleanup.DISCARD: bytes that are not the object's
        if err.cleanup.removes_download and not keep_partial:
            discard_partial(download)
        raise


def discard_partial(download: Download) -> None:
    """Remove the ``.part`` file and its journal: nothing of them can be used again."""
    download.journal.remove()
    download.part_path.unlink(missing_ok=True)


def complete_download(download: Download, checksum_verified: str | None, parts_downloaded: int,
                      progress: Progress) -> FetchResult:
    """Rename the verified ``.part`` to the final name and write the done marker."""
    rid, identity = download.request.work_rid, download.identity
    os.replace(download.part_path, download.dest)
    _write_done_marker(download.dest, identity, checksum_verified, download.checksum_note)
    download.journal.remove()
    progress.advance(files=1)
    progress.finish()
    logger.info("%s: downloaded %s (%s)", rid, download.dest.name, download.checksum_note, extra={"work_rid": rid})
    return FetchResult(download.dest, identity.size, identity.etag, identity.version_id, checksum_verified,
                       download.checksum_note, download.parts_total, parts_downloaded,
                       download.parts_total - parts_downloaded)


def _part_range(part_number: int, size: int, part_size: int) -> tuple[int, int]:
    """``[start, end)`` of a part."""
    start = part_number * part_size
    return start, min(start + part_size, size)


def check_space(rid: str, dest_dir: Path, needed: int, reserve: int, free_bytes: Callable[[Path], int]) -> None:
    """InsufficientSpace unless ``needed`` more bytes fit on ``dest_dir``'s filesystem with ``reserve`` left."""
    free = free_bytes(dest_dir)
    if free - needed < reserve:
        raise InsufficientSpace(rid, f"{dest_dir} has {free} bytes free; the download needs {needed} more and "
                                     f"{reserve} must stay free", retry_after=SPACE_RETRY_AFTER)


def _download_parts(s3_client: Any, download: Download, fd: int, todo: list[int], settings: FetchSettings,
                    progress: Progress, on_part_done: Callable[[int], None] | None,
                    on_written: Callable[[int, int], None] | None, cancelled: threading.Event) -> None:
    if not todo:
        return
    request, identity, journal = download.request, download.identity, download.journal

    def task(part_number: int) -> None:
        if cancelled.is_set():
            raise PartCancelled(f"part {part_number}")
        start, end = download.part_range(part_number)
        download_part(s3_client, request, identity, PartWrite(fd, start, end), progress, cancelled,
                      attempts=settings.part_attempts, running=download.running, on_written=on_written)
        os.fsync(fd)
        journal.mark_done(part_number)
        if download.running is not None:
            download.running.catch_up(fd, download.contiguous_done_end())  # parts that arrived out of order
        if on_part_done is not None:
            on_part_done(part_number)

    with ThreadPoolExecutor(max_workers=max(1, settings.max_concurrency), thread_name_prefix="fetch") as pool:
        futures = [pool.submit(task, n) for n in todo]  # a pool starts its tasks in the order they were given
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                cancelled.set()
                for future in pending:
                    future.cancel()
                raise _first_failure(failed)


def _first_failure(failed: list[Future[None]]) -> BaseException:
    """The real failure, not a part stopped because of it."""
    errors = [f.exception() for f in failed]
    real = [e for e in errors if not isinstance(e, PartCancelled)]
    return (real or errors)[0]  # type: ignore[return-value]


def _verify(rid: str, part_path: Path, size: int, running: RunningChecksum | None) -> str | None:
    actual = part_path.stat().st_size
    if actual != size:
        raise IntegrityError(rid, f"downloaded {actual} bytes of {part_path.name}, expected {size}")
    if running is None:
        return None
    checksum = running.checksum
    if running.position < size and not running.vouched:
        fd = os.open(part_path, os.O_RDONLY)  # only bytes not hashed as they arrived (parts of an earlier run)
        try:
            running.catch_up(fd, size)
        finally:
            os.close(fd)
    got = running.result()
    if got != checksum.value:
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

