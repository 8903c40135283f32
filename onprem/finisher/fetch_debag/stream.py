"""De-bag straight from one GET: members are cut out of the stream and written once, the zip never is.

Used by ``fetch_and_debag`` for a download of one part (``FetchSettings.part_size`` at least the object) when
``FetchSettings.stream`` is on. Bytes written per bag byte: 1 (the members), against 2 when the zip is written
to a ``.part`` file first and 3 for download → extract → copy.

1. One GET (ETag/version pinned, full-object checksum checked at its end, ``fetch.s3.stream_object``).
2. Each local file header is read as it arrives (``zip_stream.py``); its member is inflated if deflated, hashed
   (CRC-32 and the bag's algorithms: ``DebagSettings.stream_algorithms`` plus any ``manifest-<alg>.txt`` name seen
   so far) and written by writer threads (members alternate between ``DebagSettings.workers`` of them) to
   ``<temp dir>/.stream/<offset>`` — a number, never the member's name, so nothing unguarded becomes a path.
   The CRC and size must match the local header. Before a member is inflated its local header passes the
   declared-size rules and the entry count (``zip_budget.py``); while it is inflated, no byte goes past its
   declared size and one ``InflateBudget`` bounds the whole zip. Entries under ``__MACOSX/`` are skipped (never
   inflated nor written: ``zip_junk.py``).
3. The central directory (the stream's rest) is written at its offset into the sparse ``.part`` file and read
   by ``read_central_directory``: the same zip-safety guard as every other de-bag. Each of its members must
   match a local header seen (offset, raw name bytes, method, sizes, CRC), the local headers must end where it
   starts, and a local header it does not list must be macOS junk.
4. ``debag_members`` then runs as for a zip on disk, with an extractor that moves each written member into its
   place in the layout (``StreamedExtractor``): tag files parsed, digests checked against the manifests, one
   flush, works placed. Nothing reaches ``<staging>/<RID>`` unless the object's checksum and every member
   verified.

Failures: a transfer error, a kill or a full disk leave the temp dir (members the de-bag journaled are not
redone) and the next attempt streams again from the start — one part has nothing smaller to resume, as with a
one-part download to disk. A member whose CRC fails is reported as an integrity error of the download when the
rest of the stream fails the object's checksum, else as a corrupt member. ``StreamUnsupported`` (data
descriptors, an unusual layout) is raised before the zip's first unreadable member is used: the caller then
downloads the zip to disk. An encrypted member or another compression method is refused by name at once.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import logging
import os
import queue
import re
import shutil
import threading
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onprem.finisher.debag.archive import DebagJob, clean_up, debag_members, read_central_directory, temp_dir_for
from onprem.finisher.debag.budget import InflateBudget, check_declared, check_entries
from onprem.finisher.debag.journal import file_digests
from onprem.finisher.debag.junk import is_junk_name, is_macosx_name
from onprem.finisher.debag.model import DebagResult, DebagSettings, MemberDigest, SafeMember, zip_mtime
from onprem.finisher.debag.safety import raw_name
from onprem.finisher.debag.source import CompleteZip
from onprem.finisher.debag.zip_stream import ChunkReader, LocalHeader, read_local_header
from onprem.finisher.durability import start_writeback
from onprem.finisher.errors import (
    CorruptArchive,
    FinisherError,
    InsufficientSpace,
    IntegrityError,
    StreamUnsupported,
    ZipBomb,
)
from onprem.finisher.fetch.download import Download, FetchResult, discard_partial
from onprem.finisher.fetch.s3 import stream_object
from onprem.finisher.fetch_debag.arriving import central_directory_start
from onprem.finisher.progress import Progress

__all__ = ["StreamedExtractor", "stream_and_debag"]

logger = logging.getLogger(__name__)

STREAM_DIR = ".stream"
#: chunks (about 1 MiB each) queued between the stream and each writer thread
QUEUE_CHUNKS = 16
#: writer threads (members alternate between them; ``DebagSettings.workers`` up to this)
MAX_WRITERS = 4
#: the central directory is kept in memory; a larger one is read from disk instead
MAX_CENTRAL_DIRECTORY = 256 * 2**20
_MANIFEST_NAME = re.compile(r"(?:^|/)(?:tag)?manifest-([A-Za-z0-9]+)\.txt$")
_PUT_TIMEOUT = 0.5


@dataclass(frozen=True)
class StreamedMember:
    """A member written from the stream: its local header, the file it is in, its size, CRC and digests."""

    header: LocalHeader
    path: Path
    size: int
    crc: int
    digests: dict[str, str]


def stream_and_debag(s3_client: Any, download: Download, job: DebagJob, fetch_progress: Progress,
                     ) -> tuple[FetchResult, DebagResult]:
    """Stream ``download``'s object and de-bag it on the way (``job``: where and how, its ``version_tag`` set);
    the results ``fetch_object``/``debag_archive`` give.

    The ``.part`` file (sparse, made by ``open_download``) only ever receives the zip's central directory; it is
    removed once the works are placed. Raises what the fetch and the de-bag raise, or StreamUnsupported.
    """
    rid, debag_settings = download.request.work_rid, job.settings
    temp_dir = temp_dir_for(job.staging_dir, rid, job.version_tag)
    stream_dir = temp_dir / STREAM_DIR
    shutil.rmtree(stream_dir, ignore_errors=True)
    stream_dir.mkdir(parents=True)
    # the .part holds no member (at most the central directory): any failure discards it, a next attempt streams
    # the zip again; a member file in .stream is named by its offset, of no use to a reader or a resume
    try:
        written, cd_start = _stream_members(s3_client, download, stream_dir, debag_settings, fetch_progress)
    except (FinisherError, StreamUnsupported) as err:
        shutil.rmtree(stream_dir, ignore_errors=True)
        clean_up(err, temp_dir, rid, debag_settings)
        discard_partial(download)
        raise
    fetched = _fetched(download, fetch_progress)
    try:
        members = read_central_directory(download.part_path, rid, debag_settings)
        _check_against_local_headers(members, written, cd_start, download, rid)
    except (FinisherError, StreamUnsupported) as err:
        if isinstance(err, StreamUnsupported):
            shutil.rmtree(stream_dir, ignore_errors=True)  # read from disk next: the members are written again
        clean_up(err, temp_dir, rid, debag_settings)  # a refusal's evidence holds .stream: the members as read
        discard_partial(download)
        raise
    extractor = StreamedExtractor(written, job.progress)
    try:
        debagged = debag_members(CompleteZip(download.part_path), members, job, archive=download.dest,
                                 extractor=extractor)
    finally:
        discard_partial(download)  # it holds only the central directory: a next attempt streams the zip again
    return fetched, debagged


def _fetched(download: Download, progress: Progress) -> FetchResult:
    identity, rid = download.identity, download.request.work_rid
    verified = download.running.checksum.algorithm if download.running is not None else None
    progress.advance(files=1)
    progress.finish()
    logger.info("%s: streamed %s (%s; de-bagged on the way, the zip not kept)", rid, download.dest.name,
                download.checksum_note, extra={"work_rid": rid})
    return FetchResult(download.dest, identity.size, identity.etag, identity.version_id, verified,
                       download.checksum_note, 1, 1, 0)


def _stream_members(s3_client: Any, download: Download, stream_dir: Path, settings: DebagSettings,
                    progress: Progress) -> tuple[dict[int, StreamedMember], int]:
    """Write every member of the stream; write the central directory into the ``.part`` file. Returns the
    members by local header offset and where the central directory starts."""
    progress.start(download.identity.size, 1)
    chunks = stream_object(s3_client, download.request, download.identity, download.running)
    try:
        return _write_members(chunks, download, stream_dir, settings, progress)
    finally:
        chunks.close()  # an early stop closes the GET's connection now, not when collected


def _write_members(chunks: Generator[bytes, None, None], download: Download, stream_dir: Path,
                   settings: DebagSettings, progress: Progress) -> tuple[dict[int, StreamedMember], int]:
    rid = download.request.work_rid
    reader = ChunkReader(_reported(chunks, progress))
    budget = InflateBudget(rid, settings)
    writers = [_MemberWriter(stream_dir, rid, settings, budget)
               for _ in range(max(1, min(settings.workers, MAX_WRITERS)))]
    algorithms = set(settings.stream_algorithms)
    declared, entries, turns = 0, 0, itertools.cycle(writers)  # members alternate between the writers
    try:
        while (header := read_local_header(reader, rid)) is not None:
            entries += 1
            check_entries(entries, rid, settings, where=download.dest.name)
            if is_macosx_name(header.name):
                for _ in reader.iter_exact(header.compress_size, f"member {header.name!r}", rid):
                    pass  # macOS junk: never inflated nor written (the central directory's guard logs it)
                continue
            if not header.is_dir:
                check_declared(header.name, header.file_size, header.compress_size, rid, settings)
            declared += header.file_size
            if declared > settings.max_total_bytes:
                raise ZipBomb(rid, f"members declare more than {settings.max_total_bytes} bytes in all")
            if match := _MANIFEST_NAME.search(header.name):
                algorithms.add(match.group(1).lower())
            writer = next(turns)
            writer.put(("open", header, tuple(sorted(a for a in algorithms if a in hashlib.algorithms_available))))
            for piece in reader.iter_exact(header.compress_size, f"member {header.name!r}", rid):
                writer.put(("data", piece))
            writer.put(("close",))
        cd_start = reader.position
        tail = _read_tail(reader, download)
    except CorruptArchive as err:
        _stop(writers)
        transport = _transport_or(err, reader, download)
        if transport is err:
            raise
        raise transport from err
    except BaseException:
        _stop(writers)
        raise
    written: dict[int, StreamedMember] = {}
    for writer in writers:  # the whole stream was read and its checksum passed: a member error is the zip's
        written.update(writer.finish())
    fd = os.open(download.part_path, os.O_WRONLY)
    try:
        os.pwrite(fd, tail, cd_start)
    finally:
        os.close(fd)
    return written, cd_start


def _stop(writers: list[_MemberWriter]) -> None:
    for writer in writers:
        writer.stop()


def _reported(chunks: Iterator[bytes], progress: Progress) -> Iterator[bytes]:
    for chunk in chunks:
        progress.advance(len(chunk))  # the cancel token and the fault checkpoints are checked here too
        yield chunk


def _read_tail(reader: ChunkReader, download: Download) -> bytes:
    left = download.identity.size - reader.position
    if left > MAX_CENTRAL_DIRECTORY:
        raise StreamUnsupported(f"{left} bytes follow the last member: the central directory is read from disk")
    return reader.rest()


def _transport_or(error: CorruptArchive, reader: ChunkReader, download: Download) -> FinisherError:
    """A member that does not read right: the download's own fault if the object's checksum fails too.

    Only with a checksum to decide is the rest of the stream read (it is checked once the last byte is read).
    """
    if download.running is None:
        return error
    try:
        reader.drain()
    except IntegrityError as integrity:
        return integrity
    except FinisherError:
        pass  # the stream broke off: the member's own error is the one known
    return error


class _MemberWriter:
    """A writer thread: inflates, hashes and writes the members it is given to ``<stream dir>/<offset>``."""

    def __init__(self, stream_dir: Path, work_rid: str, settings: DebagSettings, budget: InflateBudget) -> None:
        self.stream_dir, self.work_rid, self.settings, self.budget = stream_dir, work_rid, settings, budget
        self.written: dict[int, StreamedMember] = {}
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-writer", daemon=True)
        self._thread.start()

    def put(self, item: tuple[Any, ...] | None) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(item, timeout=_PUT_TIMEOUT)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def finish(self) -> dict[int, StreamedMember]:
        """Wait for every member to be written; raises the writer's error."""
        self.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.written

    def _run(self) -> None:
        member: _OpenMember | None = None
        try:
            while not self._stopped.is_set():
                try:
                    item = self._queue.get(timeout=_PUT_TIMEOUT)
                except queue.Empty:
                    continue
                if item is None:
                    return
                if item[0] == "open":
                    member = _OpenMember(self.stream_dir / str(item[1].offset), item[1], item[2], self.work_rid,
                                         self.settings, self.budget)
                elif item[0] == "data":
                    assert member is not None
                    member.write(item[1])
                else:
                    assert member is not None
                    done = member.close()
                    self.written[done.header.offset] = done
                    member = None
        except OSError as err:
            self.error = (InsufficientSpace(self.work_rid, f"disk full while writing {self.stream_dir}")
                          if err.errno == errno.ENOSPC else err)
        except BaseException as err:  # noqa: BLE001 - handed to the stream's thread, which raises it
            self.error = err
        finally:
            if member is not None:
                member.abandon()


class _OpenMember:
    """One member being written: inflater, CRC, hashers, size guard, the zip's budget."""

    def __init__(self, path: Path, header: LocalHeader, algorithms: tuple[str, ...], work_rid: str,
                 settings: DebagSettings, budget: InflateBudget) -> None:
        self.path, self.header, self.work_rid, self.budget = path, header, work_rid, budget
        self.limit = min(header.file_size, settings.max_member_bytes)
        self.inflater = zlib.decompressobj(-15) if header.method == zipfile.ZIP_DEFLATED else None
        self.hashers = {alg: hashlib.new(alg) for alg in algorithms}
        self.crc = self.size = 0
        self.fsync = settings.fsync
        self.file = None if header.is_dir else open(path, "wb")  # closed in close() or abandon()

    def write(self, piece: bytes) -> None:
        compressed = len(piece)
        if self.inflater is not None:
            try:
                piece = self.inflater.decompress(piece, self.limit - self.size + 1)
            except zlib.error as err:
                raise CorruptArchive(self.work_rid, f"corrupt zip member {self.header.name}: {err}") from err
            if self.inflater.unconsumed_tail:
                raise ZipBomb(self.work_rid, f"member {self.header.name!r} inflates past {self.limit} bytes")
        self._data(piece, compressed)

    def _data(self, data: bytes, compressed: int = 0) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise ZipBomb(self.work_rid, f"member {self.header.name!r} inflates past {self.limit} bytes")
        self.budget.take(compressed, len(data), self.header.name)  # before the bytes reach the disk
        self.crc = zlib.crc32(data, self.crc)
        for hasher in self.hashers.values():
            hasher.update(data)
        if self.file is not None:
            self.file.write(data)
        elif data:
            raise CorruptArchive(self.work_rid, f"folder member {self.header.name!r} has data")

    def close(self) -> StreamedMember:
        name = self.header.name
        if self.inflater is not None:
            self._data(self.inflater.flush())
            if not self.inflater.eof:
                raise CorruptArchive(self.work_rid, f"corrupt zip member {name}: its deflate stream is cut short")
        if self.size != self.header.file_size:
            raise CorruptArchive(self.work_rid, f"corrupt zip member {name}: {self.size} bytes, its header says "
                                                f"{self.header.file_size}")
        if self.crc != self.header.crc:
            raise CorruptArchive(self.work_rid, f"corrupt zip member {name}: Bad CRC-32 "
                                                f"(got {self.crc:08x}, header {self.header.crc:08x})")
        if self.file is not None:
            self.file.flush()
            if self.fsync:
                start_writeback(self.file.fileno())  # flushed for good by the de-bag's one sync_filesystem
            self.file.close()
        return StreamedMember(self.header, self.path, self.size, self.crc,
                              {alg: h.hexdigest() for alg, h in self.hashers.items()})

    def abandon(self) -> None:
        if self.file is not None:
            self.file.close()


def _check_against_local_headers(members: list[SafeMember], written: dict[int, StreamedMember], cd_start: int,
                                 download: Download, rid: str) -> None:
    """The central directory (guarded) must describe exactly the members the stream delivered."""
    where = download.dest.name
    start = central_directory_start(download.part_path, rid)
    if start != cd_start:
        raise StreamUnsupported(f"{where}: {start - cd_start} bytes lie between the last member and the central "
                                "directory")
    listed = {m.info.header_offset for m in members}
    unlisted = [local for offset, local in written.items() if offset not in listed]
    if not listed <= written.keys() or not all(is_junk_name(local.header.name) for local in unlisted):
        raise StreamUnsupported(f"{where}: the central directory lists {len(members)} members, not the "
                                f"{len(written)} local headers the zip holds in order")
    for member in members:
        info, local = member.info, written[member.info.header_offset]
        declared = (raw_name(info), info.compress_type, info.compress_size, info.file_size, info.CRC)
        seen = (local.header.raw_name, local.header.method, local.header.compress_size, local.header.file_size,
                local.header.crc)
        if declared != seen:
            raise CorruptArchive(rid, f"{where}: member {member.name!r} differs between the central directory "
                                      f"{declared[1:]} and its local header {seen[1:]}")


class StreamedExtractor:
    """The de-bag's extractor for members written from the stream: moves each into its place in the layout."""

    def __init__(self, written: dict[int, StreamedMember], progress: Progress | None) -> None:
        self.written, self.progress = written, progress

    def extract(self, member: SafeMember, target: Path, algorithms: tuple[str, ...],
                cancelled: threading.Event | None = None, *, report: bool = True) -> MemberDigest:
        """``target`` gets the member's bytes (a rename); digests the stream did not compute are read from disk."""
        local = self.written[member.info.header_offset]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local.path, target)
        mtime = zip_mtime(member.info)
        os.utime(target, (mtime, mtime))
        digests = {alg: local.digests[alg] for alg in algorithms if alg in local.digests}
        missing = tuple(alg for alg in algorithms if alg not in local.digests)
        if missing:
            digests.update(file_digests(target, missing))
        if report and self.progress is not None:
            self.progress.advance(local.size, files=1)
        return MemberDigest(member.name, local.size, local.crc, digests)

    def close(self) -> None:
        return None
