"""Fetch and de-bag in one pass: the S3 object read as byte ranges (``fetch.s3.S3Source``) and de-bagged as they
arrive (``debag.ranged``); the zip itself is never written. One path for every bag, whatever its size or the part size.

The HEAD pins the version, ETag, size and checksum (the attempt's, ``request.head``, or one made here). Every range
is hashed with the object's S3 checksum when it combines from ranges (``fetch.checksum``: a CRC32, CRC32C or
CRC64NVME full-object checksum, or a composite whose parts are of one size, the ranges' checksums cut at the parts);
the ranges cover the whole object, so their combination is checked before anything is placed (IntegrityError
otherwise). Any other checksum is logged as not verified, and the members are still checked against their CRC-32
and the bag's manifests. Free space needed: the payload.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from onprem.finisher.debag.model import DebagResult, DebagSettings
from onprem.finisher.debag.range_hash import Piece
from onprem.finisher.debag.ranged import RangeReading, debag_source
from onprem.finisher.debag.staging import DebagJob
from onprem.finisher.errors import InsufficientSpace, IntegrityError
from onprem.finisher.fetch.checksum import (
    ObjectChecksum,
    combine_composite,
    combine_ranges,
    composite_checksum,
    full_object_checksum,
    range_checksum,
)
from onprem.finisher.fetch.request import DownloadIdentity, FetchRequest, FetchSettings
from onprem.finisher.fetch.s3 import S3Source, head_object, part_layout, quoted_etag, require_pinned
from onprem.finisher.progress import Progress

__all__ = ["FetchDebagJob", "Fetched", "FetchedAndDebagged", "fetch_and_debag"]

logger = logging.getLogger(__name__)

#: seconds before a message that failed for lack of space is retried
SPACE_RETRY_AFTER = 900


@dataclass(frozen=True)
class FetchDebagJob:
    """One object fetched and de-bagged: the object, where its works go, and how."""

    request: FetchRequest
    staging_dir: Path
    fetch_settings: FetchSettings = field(default_factory=lambda: FetchSettings())
    debag_settings: DebagSettings = field(default_factory=lambda: DebagSettings())
    #: names the de-bag's temp dir (None: the pinned ETag): a run started again finds its journal there
    version_tag: str | None = None
    fetch_progress: Progress | None = None
    debag_progress: Progress | None = None
    free_bytes: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free
    #: called once every member is written and verified, before the flush and the placing (a crash point)
    before_place: Callable[[], None] | None = None


@dataclass(frozen=True)
class Fetched:
    """What was read of the object: its size and what its checksum check said."""

    size: int
    #: the S3 checksum algorithm verified over the whole object, None when none could be
    checksum_verified: str | None
    checksum_note: str
    segments_resumed: int = 0


@dataclass(frozen=True)
class FetchedAndDebagged:
    fetch: Fetched
    debag: DebagResult


def fetch_and_debag(s3_client: Any, job: FetchDebagJob) -> FetchedAndDebagged:
    """Read ``job.request``'s object as ranges and de-bag it into ``job.staging_dir/<RID>/`` (module docstring).

    Raises RestoreInProgress / RestoreExpired, ObjectChanged (ETag, version or size differ, or the object was
    overwritten mid-read), ObjectMissing, InsufficientSpace, TransferError, IntegrityError (the full-object
    checksum differs) and every named refusal of the de-bag; what stays on disk is the error's ``cleanup``.
    """
    request, settings = job.request, job.fetch_settings
    rid = request.work_rid
    head = require_pinned(request, request.head or head_object(s3_client, request))
    etag = quoted_etag(request.etag or head.etag)
    pinned = DownloadIdentity(request.bucket, request.key, etag, request.version_id or head.version_id, head.size,
                              settings.part_size)
    checksum, note, part_size = None, "not requested", 0
    if settings.verify_checksum:
        checksums = {"ETag": head.etag, **head.checksums}
        checksum, note = full_object_checksum(checksums)
        if checksum is not None and range_checksum(checksum.algorithm) is None:
            note = f"{checksum.algorithm} full-object checksum cannot be combined from ranges: not verified"
            checksum = None
        composite = composite_checksum(checksums) if checksum is None else None
        if composite is not None:
            part_size = part_layout(s3_client, request, pinned, composite[1]) or 0
            if part_size:
                checksum = composite[0]
                note = f"{checksum.algorithm} composite checksum of {composite[1]} parts of {part_size} bytes"
            else:
                note += "; its parts are not of one size: not verified"
    crc = range_checksum(checksum.algorithm) if checksum is not None else None

    def space_check(needed: int) -> None:
        free = job.free_bytes(job.staging_dir)
        if free - needed < settings.min_free_bytes:
            raise InsufficientSpace(rid, f"{job.staging_dir} has {free} bytes free; the payload needs {needed} more "
                                         f"and {settings.min_free_bytes} must stay free", retry_after=SPACE_RETRY_AFTER)

    def settle(pieces: list[Piece]) -> None:
        if checksum is not None:
            _check(rid, checksum, pieces, head.size, PurePosixPath(request.key).name, part_size)
        if job.before_place is not None:
            job.before_place()

    logger.info("%s: fetching %s (%d bytes, ranges of %d, %d at once; %s)", rid, request.key, head.size,
                settings.part_size, settings.max_concurrency, note, extra={"work_rid": rid})
    job.staging_dir.mkdir(parents=True, exist_ok=True)
    source = S3Source(s3_client, request, pinned, attempts=settings.part_attempts)
    debag_job = DebagJob(rid, job.staging_dir, job.debag_settings, job.version_tag or etag, None, job.debag_progress)
    result = debag_source(source, debag_job, RangeReading(
        part_size=settings.part_size, concurrency=settings.max_concurrency, range_checksum=crc,
        cut_points=tuple(range(part_size, head.size, part_size)) if part_size else (),
        read_progress=job.fetch_progress, space_check=space_check, settle=settle))
    # settle ran (the checksum held) before anything was placed
    fetched = Fetched(head.size, checksum.algorithm if checksum else None, note, result.segments_resumed)
    logger.info("%s: fetched %s (%s%s; de-bagged on the way, the zip not kept)", rid, source.name,
                f"{note}: verified" if checksum else note,
                f"; {result.segments_resumed} segment(s) verified before a restart" if result.segments_resumed else "",
                extra={"work_rid": rid})
    return FetchedAndDebagged(fetched, result)


def _check(rid: str, checksum: ObjectChecksum, pieces: list[Piece], size: int, name: str, part_size: int) -> None:
    """IntegrityError unless the ranges' checksums combined (per part, for a composite) equal the object's."""
    ranges = [(p.start, p.end, p.crc) for p in pieces]
    got = (combine_composite(checksum.algorithm, ranges, part_size, size) if part_size
           else combine_ranges(checksum.algorithm, ranges, size))
    kind = "composite" if part_size else "full-object"
    if got is None:
        raise IntegrityError(rid, f"the ranges read of {name} do not cover the object: its {checksum.algorithm} "
                                  f"{kind} checksum cannot be checked")
    if got != checksum.value:
        raise IntegrityError(rid, f"{checksum.algorithm} mismatch for {name} ({kind} checksum: expected "
                                  f"{checksum.value}, got {got}, combined from the ranges read): nothing placed")
