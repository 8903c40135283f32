"""De-bag a zip from its byte ranges: the plan from the central directory, the tag files first, then the payload
in segments read in parallel, each member written once at its final path; the one path for S3 and local zips.

1. ``read_directory``: the tail read once (zip64 too), every member through the zip-safety guard, the works
   planned (``plan_works``) before a byte of payload is read.
2. The tag files' segments (small ranges) start first and the bags' manifests are loaded as soon as they are in;
   the payload's segments start with them: a member is hashed with the algorithms the manifests' names declare
   (the plan), and its digests are held to the manifests' once its segment ended, so none waits for a round trip.
3. The payload segments (``segments.make_segments``), ``concurrency`` at a time: each one ranged read streamed
   through ``MemberWriter`` (local header held to the central directory, inflate, CRC-32, the manifests'
   algorithms, write), no thread hop per member; a segment running while other connections idle borrows them to
   read its next sub-ranges ahead (``read_ahead``).
4. A segment whose members verified is journaled (``SegmentJournal``): a killed run resumes from the rest.
5. Fixity of every work (``verify_work``), then ``settle`` sees the checksums of every range of the object
   (segments and the tail: the whole object, the bytes between members included) — the fetch compares their
   combination with S3's full-object checksum — then one flush of the filesystem, then the works are placed.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from onprem.finisher.debag.byte_source import ByteSource
from onprem.finisher.debag.directory import read_directory
from onprem.finisher.debag.layout import plan_works
from onprem.finisher.debag.manifest import load_work_manifest
from onprem.finisher.debag.member_stream import MemberWriter, SegmentReader
from onprem.finisher.debag.model import BagManifest, DebagResult, MemberDigest, WorkPlan, declared_algorithms, nfc
from onprem.finisher.debag.range_hash import Piece, PieceHasher, RangeChecksum
from onprem.finisher.debag.read_ahead import Connections, read_ahead
from onprem.finisher.debag.safety import check_archive
from onprem.finisher.debag.segments import MIN_SEGMENT, Role, Segment, Span, make_segments, make_spans
from onprem.finisher.debag.staging import JOURNAL_NAME, DebagJob, SegmentJournal, clean_up, place_works, temp_dir_for
from onprem.finisher.debag.verify import verify_work
from onprem.finisher.durability import sync_filesystem
from onprem.finisher.errors import (
    BagInvalid,
    CorruptArchive,
    ExtractionCancelled,
    FinisherError,
    InsufficientSpace,
    IntegrityError,
)
from onprem.finisher.progress import NullProgress, Progress

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class RangeReading:
    """How the ranges are read and what is told on the way; the defaults suit a local zip."""

    part_size: int = 64 * 2**20
    concurrency: int = 4
    #: the checksum every range is hashed with (the object's S3 full-object checksum), None: none
    range_checksum: RangeChecksum | None = None
    #: offsets where the ranges' checksums are cut (the upload's part boundaries, for a composite checksum)
    cut_points: tuple[int, ...] = ()
    #: bytes read (the download's progress); the job's progress gets bytes written
    read_progress: Progress | None = None
    #: called with the bytes the members still to be written need: raises InsufficientSpace
    space_check: Callable[[int], None] | None = None
    #: called with the pieces covering the whole object once every work verified, before the flush and the placing
    settle: Callable[[list[Piece]], None] | None = None


def debag_source(source: ByteSource, job: DebagJob, reading: RangeReading | None = None) -> DebagResult:
    """Extract and verify every work of ``source``'s zip into ``<job.staging_dir>/<RID>/`` (module docstring).

    Raises the named refusals of the de-bag (UnsafeArchive, CorruptArchive, LocalHeaderMismatch, BagInvalid …),
    what the source raises (TransferError, ObjectChanged …) and what ``settle`` raises (IntegrityError); what
    stays on disk is the error class's ``cleanup`` (``staging.clean_up``).
    """
    reading = reading or RangeReading(concurrency=job.settings.workers)
    rid, settings = job.work_rid, job.settings
    temp_dir = temp_dir_for(job.staging_dir, rid, job.version_tag)
    try:
        directory = read_directory(source, rid, settings)
        members = check_archive(directory.archive, rid, settings)
        plans = plan_works(members, rid, allow_plain_zip=settings.allow_plain_zip, zip_name=source.name,
                           expected_rids=job.expected_rids)
        temp_dir.mkdir(parents=True, exist_ok=True)
        journal = SegmentJournal(temp_dir / JOURNAL_NAME, source.identity)
    except FinisherError as err:
        clean_up(err, temp_dir, rid, settings)
        raise
    segments = make_segments(make_spans(directory.archive.infolist(), directory.start_dir, plans), reading.part_size,
                             reading.concurrency)
    tail: list[Piece] = []
    if reading.range_checksum is not None:
        hasher = PieceHasher(reading.range_checksum, directory.start_dir, source.size, reading.cut_points)
        hasher.feed(directory.tail)
        tail = hasher.so_far()
    run = _Run(source, job, reading, plans, temp_dir, journal)
    try:
        pieces, digests, resumed = run.read_all(segments)
        works = [verify_work(plan, run.manifests.get(plan.work_rid), digests, job.staging_dir) for plan in plans]
        if reading.settle is not None:
            reading.settle(sorted([*pieces, *tail], key=lambda piece: piece.start))
        if settings.fsync:
            sync_filesystem(temp_dir)  # one flush of every written file before anything is placed
        place_works(plans, temp_dir, job.staging_dir)
    except FinisherError as err:
        journal.close()
        clean_up(err, temp_dir, rid, settings)
        raise
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise InsufficientSpace(rid, f"disk full while extracting into {temp_dir}") from err
        raise
    finally:
        journal.close()
    shutil.rmtree(temp_dir, ignore_errors=True)
    run.progress.finish()
    run.read_progress.finish()
    for work in works:
        logger.info("%s: de-bagged %d files, %d bytes (%s)", work.work_rid, work.files, work.bytes,
                    "fixity verified: " + ",".join(work.algorithms) if work.fixity_checked
                    else "no fixity available", extra={"work_rid": work.work_rid})
    return DebagResult(works=works, members_resumed=resumed[0], segments_resumed=resumed[1])


class _Run:
    """The reading of one zip's segments: tag files, manifests, then the payload on one bounded pool."""

    def __init__(self, source: ByteSource, job: DebagJob, reading: RangeReading, plans: list[WorkPlan],
                 temp_dir: Path, journal: SegmentJournal) -> None:
        self.source, self.job, self.reading, self.plans = source, job, reading, plans
        self.temp_dir, self.journal = temp_dir, journal
        self.cancelled = threading.Event()
        self.progress = job.progress or NullProgress()
        self.read_progress = reading.read_progress or NullProgress()
        self.writer = MemberWriter(job.work_rid, job.settings, self.progress, self.cancelled)
        self.connections = Connections(reading.concurrency)
        self._ahead: ThreadPoolExecutor | None = None
        self.hashed = {plan.work_rid: declared_algorithms(str(t.bag_path) for t in plan.tag_files) for plan in plans}
        self.manifests: dict[str, BagManifest] = {}

    def read_all(self, segments: list[Segment]) -> tuple[list[Piece], dict[str, MemberDigest], tuple[int, int]]:
        """Every segment read (or taken from the journal): their pieces, the members' digests, (members, segments)
        resumed."""
        pieces: list[Piece] = []
        digests: dict[str, MemberDigest] = {}
        tags = [seg for seg in segments if seg.tags]
        todo: list[Segment] = []
        members_resumed = segments_resumed = 0
        for segment in segments:
            if segment.tags:
                continue
            reused = self.journal.reusable(segment, self.temp_dir, self.hashed)
            if reused is None:
                todo.append(segment)
                continue
            pieces.extend(reused[0])
            digests.update((digest.name, digest) for digest in reused[1])
            members_resumed += len(reused[1])
            segments_resumed += 1
        payload = [span for seg in todo for span in seg.members]
        if self.reading.space_check is not None:
            self.reading.space_check(sum(span.info.file_size for seg in [*tags, *todo] for span in seg.members))
        self.progress.start(sum(span.info.file_size for span in payload), len(payload))
        self.read_progress.start(sum(seg.size for seg in [*tags, *todo]), 1)
        if segments_resumed:
            logger.info("%s: %d members in %d segments already verified before a restart, not read again",
                        self.job.work_rid, members_resumed, segments_resumed, extra={"work_rid": self.job.work_rid})
        concurrency = max(1, self.reading.concurrency)
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="segment") as pool, \
                ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="read-ahead") as self._ahead:
            tag_paths: dict[str, dict[str, Path]] = {}
            tags_left, ended = len(tags), []
            if not tags:
                self._load_manifests(tag_paths)  # no tag files: a plain zip's plan has no bag to load
            # the tag segments start first, the payload's at once behind them: what a member is hashed with is
            # known from the manifests' names (the plan), the manifests' values are needed once its segment ended
            with closing(self._run(pool, [*tags, *todo])) as ending:
                for segment, read, written in ending:
                    pieces.extend(read)
                    if segment.tags:
                        for span, _ in written:
                            assert span.plan is not None and span.target is not None and span.target.bag_path
                            tag_paths.setdefault(span.plan.work_rid, {})[span.target.bag_path] = self._target(span)
                        tags_left -= 1
                        if not tags_left:
                            self._load_manifests(tag_paths)
                    else:
                        ended.append((segment, read, written))
                    while ended and not tags_left:
                        done, done_read, done_written = ended.pop()
                        found = [digest for _, digest in done_written]
                        digests.update((digest.name, digest) for digest in found)
                        if all(self._verified(span, digest) for span, digest in done_written):
                            self.journal.record(done, done_read, found)
        return pieces, digests, (members_resumed, segments_resumed)

    def _load_manifests(self, tag_paths: dict[str, dict[str, Path]]) -> None:
        for plan in (plan for plan in self.plans if plan.bag):
            manifest = load_work_manifest(plan, self.temp_dir / plan.work_rid / plan.bag_dir,
                                          tag_paths.get(plan.work_rid, {}), self.job.settings)
            unhashed = sorted(set(manifest.algorithms) - set(self.hashed[plan.work_rid]))
            if unhashed:
                raise BagInvalid(plan.work_rid, f"manifest algorithm(s) {', '.join(unhashed)} not declared by a "
                                                "manifest file name at the bag's root")
            self.manifests[plan.work_rid] = manifest

    def _run(self, pool: ThreadPoolExecutor,
             segments: list[Segment]) -> Iterator[tuple[Segment, list[Piece], list[tuple[Span, MemberDigest]]]]:
        """Each segment read on ``pool`` (started in file order), as they finish; the first failure stops all."""
        futures = {pool.submit(self._read_segment, segment): segment for segment in segments}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)  # each journaled as it ends
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    raise _first_failure(failed)
                for future in done:
                    read, written = future.result()
                    yield futures[future], read, written
        finally:  # a failure, or the caller stopped (a bad manifest): the other segments stop now
            if pending:
                self.cancelled.set()
                for future in pending:
                    future.cancel()
                wait(pending)

    def _read_segment(self, segment: Segment) -> tuple[list[Piece], list[tuple[Span, MemberDigest]]]:
        checksum, cuts = self.reading.range_checksum, self.reading.cut_points
        hasher = PieceHasher(checksum, segment.start, segment.end, cuts) if checksum is not None else None
        assert self._ahead is not None
        chunks = read_ahead(self.source, segment.start, segment.end, sub_range=MIN_SEGMENT,
                            ahead=self.reading.concurrency - 1, connections=self.connections, pool=self._ahead)

        def counted() -> Iterator[bytes]:
            for chunk in chunks:
                if self.cancelled.is_set():
                    raise ExtractionCancelled(f"segment at {segment.start}")
                if hasher is not None:
                    hasher.feed(chunk)
                self.read_progress.advance(len(chunk))
                yield chunk

        reader = SegmentReader(counted(), segment.start)
        written = []
        with self.connections.hold():  # nothing is read before: read_ahead is a generator
            try:
                for span in segment.spans:
                    target = self._target(span) if span.role is not Role.SKIP else None
                    plan = span.plan if span.role is Role.PAYLOAD else None  # tag files: bagit hashes them
                    algorithms = self.hashed.get(plan.work_rid, ()) if plan else ()
                    digest = self.writer.read_span(reader, span, target, algorithms)
                    if digest is not None:
                        written.append((span, digest))
            except CorruptArchive as err:
                if hasher is not None:
                    self._read_again(segment, hasher, err)
                raise
            finally:
                chunks.close()  # a stopped segment's GET is closed now, not when it is collected
        return (hasher.so_far() if hasher is not None else []), written

    def _read_again(self, segment: Segment, first: PieceHasher, err: CorruptArchive) -> None:
        """A member that does not read: the same bytes read a second time decide whether they changed on the way
        (IntegrityError: read again on retry) or are the object's own (the CorruptArchive stands)."""
        again = PieceHasher(first.checksum, segment.start, first.position, self.reading.cut_points)
        for chunk in self.source.chunks(segment.start, first.position):
            again.feed(chunk)
        if again.so_far() != first.so_far():
            where = f"bytes {segment.start}-{first.position - 1} of {self.source.name}"
            raise IntegrityError(self.job.work_rid, f"{where} differ between two reads (changed in transit): "
                                                    f"{err.message}") from err

    def _target(self, span: Span) -> Path:
        assert span.plan is not None and span.target is not None
        return self.temp_dir / span.plan.work_rid / span.target.target

    def _verified(self, span: Span, digest: MemberDigest) -> bool:
        plan, target = span.plan, span.target
        assert plan is not None and target is not None
        manifest = self.manifests.get(plan.work_rid)
        if manifest is None:
            return True  # a plain zip: its CRC is all there is to check
        expected = manifest.payload.get(nfc(str(target.bag_path)))
        return expected is not None and all(digest.digests.get(alg) == value for alg, value in expected.items())


def _first_failure(failed: list[Future[object]]) -> BaseException:
    """The real failure, not a segment stopped because of it."""
    errors = [f.exception() for f in failed]
    real = [e for e in errors if not isinstance(e, ExtractionCancelled)]
    return (real or errors)[0]  # type: ignore[return-value]
