"""Overlapped fetch + de-bag: members are extracted and hashed while the rest of the zip is still downloading.

The stage runs at the pace of its slowest resource (network, CPU for inflate + hashing, disk) instead of the
sum of download time and de-bag time. It is fetch.py and debag.py, reused, in this order:

1. HEAD, pinning and the part journal (``open_download``); a zip already downloaded is de-bagged as it is. A
   download of one part (``FetchSettings.stream``) is streamed instead (``stream.py``, chosen by the caller,
   ``wiring.fetch_and_debag``): members are cut out of the GET and the zip is never written; this module is a
   zip written to disk.
2. One download of every missing part on fetch's executor. When the part holding the tail (End of central
   directory, central directory) is large — one streamed GET of the whole zip, the fastest transfer on a fast
   link — the tail is read ahead by one small ranged GET beside the stream and written into the ``.part`` file
   (only where the stream cannot be yet; the stream's own bytes there are compared with it at the end) and
   every part goes in file order; else the tail's parts go first.
3. As soon as the tail is on disk, the central directory is read from the ``.part`` file through the same
   guard as ``debag_archive`` (every zip-safety check passes before any member is extracted) and the free
   space for the rest of the zip plus the extracted payload is checked.
4. ``debag_members`` reads each member from the ``.part`` file once its bytes are written — its parts
   journaled, or the part still arriving written past it (``ArrivingZip``, advanced at every chunk) —
   hashing it while writing it, as the sequential de-bag does.
5. The whole object's size and full-object checksum are verified as soon as the last part is in
   (``verify_download``: the checksum was computed while the bytes arrived, or botocore checked the whole GET).
   Once every member verified and that check passed, ``.part`` is renamed (``complete_download``); only then
   are the works moved into ``<staging>/<RID>/``. A checksum failure is a de-bag failure: nothing placed, the
   temp dir kept as evidence.

Free space: the rest of the zip plus the payload not yet extracted (about twice the zip for stored bags, less for a
resume) must fit with ``FetchSettings.min_free_bytes`` left, checked before the first member is extracted.
Multi-bag zips: a bag's members are journaled once its manifests (often at the end of its bag) have arrived;
they are extracted and hashed before that all the same.

Resume after a crash: from the part journal (parts not downloaded again) and from the de-bag's member journal
(members not extracted again). A failed download stops the de-bag with the download's own error; what stays
on disk is its class's ``cleanup`` (``debag.archive.clean_up``): a transfer error leaves the temp dir for the next
run, IntegrityError discards the download, ObjectChanged/ObjectMissing both, as the bytes can never be used.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onprem.finisher.debag.archive import (
    DebagJob,
    clean_up,
    debag_archive,
    debag_members,
    read_central_directory,
    temp_dir_for,
)
from onprem.finisher.debag.model import DebagResult, DebagSettings, SafeMember
from onprem.finisher.errors import FinisherError, IntegrityError, SourceUnavailable
from onprem.finisher.fetch.download import (
    Download,
    FetchRequest,
    FetchResult,
    FetchSettings,
    check_space,
    complete_download,
    discard_partial,
    download_parts,
    open_download,
    verify_download,
)
from onprem.finisher.fetch.s3 import get_range
from onprem.finisher.fetch_debag.arriving import TAIL_PROBE, ArrivingZip, central_directory_start
from onprem.finisher.progress import NullProgress, Progress

__all__ = ["FetchedAndDebagged", "fetch_and_debag"]

#: a part holding the tail gets the tail read ahead only when it is larger than this (16 tails)
SMALL_TAIL_PART = 16 * TAIL_PROBE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedAndDebagged:
    """The results of both stages, as ``fetch_object`` and ``debag_archive`` give them."""

    fetch: FetchResult
    debag: DebagResult


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class FetchDebagJob:
    """One download de-bagged while it arrives: the object, where its bytes and its works go, and how."""

    request: FetchRequest
    download_dir: Path
    staging_dir: Path
    fetch_settings: FetchSettings = field(default_factory=lambda: FetchSettings())
    debag_settings: DebagSettings = field(default_factory=lambda: DebagSettings())
    #: names the de-bag's temp dir as in ``debag_archive`` (None: the pinned ETag)
    version_tag: str | None = None
    fetch_progress: Progress | None = None
    debag_progress: Progress | None = None
    free_bytes: Callable[[Path], int] = _free_bytes


def fetch_and_debag(s3_client: Any, job: FetchDebagJob, *,
                    download: Download | FetchResult | None = None) -> FetchedAndDebagged:
    """``fetch_object`` then ``debag_archive`` with the same results, errors and guarantees, overlapped, the zip
    written to its ``.part`` file (``wiring.fetch_and_debag`` streams a one-part download instead).

    ``download``: the download already opened by the caller (``open_download``), else opened here. ``version_tag``
    names the de-bag's temp dir as in ``debag_archive`` (default: the pinned ETag); give both modes the same one
    and either resumes the other's verified members. Raises whatever either stage raises; nothing is placed in
    ``staging_dir`` unless the whole object and every member verified.
    """
    request, download_dir, staging_dir, free_bytes = job.request, job.download_dir, job.staging_dir, job.free_bytes
    fetch_settings, debag_settings, version_tag = job.fetch_settings, job.debag_settings, job.version_tag
    fetch_progress, debag_progress = job.fetch_progress or NullProgress(), job.debag_progress
    rid = request.work_rid
    download = download or open_download(s3_client, request, download_dir, fetch_settings, free_bytes=free_bytes)
    if isinstance(download, FetchResult):
        return FetchedAndDebagged(download, debag_archive(download.path, rid, staging_dir, debag_settings,
                                                          version_tag=version_tag or download.etag,
                                                          progress=debag_progress))
    version_tag = version_tag or download.identity.etag
    temp_dir = temp_dir_for(staging_dir, rid, version_tag)
    fetch_progress.start(download.identity.size, 1)
    fetch_progress.advance(download.done_bytes())
    run = _Overlap(s3_client, download, fetch_settings, fetch_progress)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch-debag") as runner:
            run.start(runner)
            try:
                members, cd_start = _read_central_directory(run.source, download, debag_settings)
                run.source.expect(members, cd_start)
                _check_room(download, members, download_dir, temp_dir, fetch_settings, free_bytes)
                logger.info("%s: central directory read (%d members); de-bagging while downloading", rid,
                            len(members), extra={"work_rid": rid})
                job = DebagJob(rid, staging_dir, debag_settings, version_tag, progress=debag_progress)
                debagged = debag_members(run.source, members, job, archive=download.dest)
            finally:
                run.stop.set()  # a no-op once the download is done; else the de-bag failed and the parts stop
    except FinisherError as err:  # only now: no thread reads the .part file any more
        clean_up(err, temp_dir, rid, debag_settings, discard_download=lambda: discard_partial(download))
        raise
    assert run.finished is not None  # settle() ran: debag_members places nothing without it
    return FetchedAndDebagged(run.finished, debagged)


class _Overlap:
    """The download of the missing parts on its own thread, and the ``ArrivingZip`` the de-bag reads from."""

    def __init__(self, s3_client: Any, download: Download, settings: FetchSettings, progress: Progress) -> None:
        self.s3_client, self.download, self.settings, self.progress = s3_client, download, settings, progress
        #: one stream for the tail's part (the tail's part is the whole object, or the tail is not yet here):
        #: read the tail ahead with one small GET, then every part in file order
        self.probe_tail = settings.tail_ahead and _read_tail_ahead_first(download)
        self._tail: tuple[int, bytes] | None = None
        self._probe_give_up = threading.Event()
        self.order = _download_order(download, tail_first=not self.probe_tail)
        self.stop = threading.Event()
        self.source = ArrivingZip(download, self._settle)
        self.finished: FetchResult | None = None
        self._downloading: Future[str | None] | None = None

    def start(self, runner: ThreadPoolExecutor) -> None:
        self._downloading = runner.submit(self._fetch_rest)
        self._downloading.add_done_callback(lambda f: self.source.download_ended(f.exception()))

    def _fetch_rest(self) -> str | None:
        """Every missing part (the tail read ahead beside them), then the whole-object check."""
        probe = threading.Thread(target=self._read_tail_ahead, name="fetch-tail", daemon=True)
        if self.probe_tail:
            probe.start()
        try:
            download_parts(self.s3_client, self.download, self.order, self.settings, self.progress,
                           on_part_done=self.source.part_arrived, on_written=self.source.written,
                           cancelled=self.stop, keep_partial=True)
        finally:
            if self.probe_tail:
                self._probe_give_up.set()  # it may wait for small tail parts that will not come now
                probe.join()
        if self._tail is not None:
            self._check_tail(*self._tail)
        return verify_download(self.download, keep_partial=True)

    def _read_tail_ahead(self) -> None:
        """One small ranged GET of the zip's tail (End of central directory, central directory), beside the
        stream, so members are extracted while one stream writes the zip from its start. Only a head start: when
        it fails or comes too late, the stream delivers the tail."""
        size, rid = self.download.identity.size, self.download.request.work_rid
        start = max(0, size - TAIL_PROBE)
        try:
            tail = get_range(self.s3_client, self.download.request, self.download.identity, start, size)
            if self.source.write_ahead(start, tail, SMALL_TAIL_PART, self._probe_give_up):
                self._tail = (start, tail)
        except Exception as err:  # noqa: BLE001 - the stream brings these bytes anyway; its errors are the real ones
            logger.debug("%s: tail read ahead failed (%s); the stream brings it", rid, err, extra={"work_rid": rid})

    def _check_tail(self, start: int, tail: bytes) -> None:
        """The central directory was read from the tail read ahead: the stream must have written the same bytes."""
        fd = os.open(self.download.part_path, os.O_RDONLY)
        try:
            streamed = os.pread(fd, len(tail), start)
        finally:
            os.close(fd)
        if streamed != tail:
            raise IntegrityError(self.download.request.work_rid, f"the tail of {self.download.dest.name} read "
                                 "ahead differs from the streamed object: download discarded")

    def _settle(self) -> None:
        """Every member verified: wait for the download and its check, then rename the whole object."""
        assert self._downloading is not None
        error = self._downloading.exception()
        if isinstance(error, IntegrityError):
            raise error  # bytes that differ from the object's: a de-bag failure (evidence kept), not a resume
        if error is not None:
            raise SourceUnavailable(error)
        self.finished = complete_download(self.download, self._downloading.result(), len(self.order), self.progress)


def _part_bytes(download: Download, part_number: int) -> int:
    start, end = download.part_range(part_number)
    return end - start


def _read_tail_ahead_first(download: Download) -> bool:
    """Whether the tail is worth a GET of its own: a part holding it is missing and much larger than the tail."""
    size = download.identity.size
    tail = download.parts_covering(max(0, size - TAIL_PROBE), size)
    return any(n not in download.journal.done and _part_bytes(download, n) > SMALL_TAIL_PART for n in tail)


def _download_order(download: Download, *, tail_first: bool) -> list[int]:
    """Missing parts in file order; first the tail's parts (End of central directory, central directory), or
    with the tail read ahead, only its small parts (the read ahead is written once they are in)."""
    size = download.identity.size
    tail = [n for n in download.parts_covering(max(0, size - TAIL_PROBE), size)
            if tail_first or _part_bytes(download, n) <= SMALL_TAIL_PART]
    rest = [n for n in range(download.parts_total) if n not in tail]
    return [n for n in tail + rest if n not in download.journal.done]


def _read_central_directory(source: ArrivingZip, download: Download,
                            settings: DebagSettings) -> tuple[list[SafeMember], int]:
    """The guarded members and the central directory's offset, once the zip's tail has arrived."""
    rid, size = download.request.work_rid, download.identity.size
    try:
        source.wait_range(max(0, size - TAIL_PROBE), size, what="the End of central directory")
        start = central_directory_start(download.part_path, rid)
        source.wait_range(start, size, what="the central directory")
    except SourceUnavailable as err:
        raise err.cause from None
    return read_central_directory(download.part_path, rid, settings), start


def _check_room(download: Download, members: list[SafeMember], download_dir: Path, temp_dir: Path,
                settings: FetchSettings, free_bytes: Callable[[Path], int]) -> None:
    """The rest of the zip and the extracted payload (≈ the zip again) must fit, with the reserve left free."""
    rid, staging_dir = download.request.work_rid, temp_dir.parent
    extracted = max(sum(m.info.file_size for m in members if not m.is_dir) - _tree_bytes(temp_dir), 0)
    zip_rest = download.identity.size - download.done_bytes()
    staging_dir.mkdir(parents=True, exist_ok=True)
    same_filesystem = os.stat(download_dir).st_dev == os.stat(staging_dir).st_dev
    check_space(rid, staging_dir, extracted + (zip_rest if same_filesystem else 0), settings.min_free_bytes,
                free_bytes)


def _tree_bytes(folder: Path) -> int:
    """Bytes already extracted by an earlier run (members journaled there are not extracted again)."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
