"""The work's temp dir in staging, its resume journal, what a failure leaves of it, and placing the verified works.

Members are written at their final paths inside ``<staging>/.debag-<RID>-<version>/<RID>/``; once every work of
the zip verified (and the filesystem was flushed once), each ``<tmp>/<RID>`` is renamed to ``<staging>/<RID>``:
one rename per work, never one per member.

The staging folder of works defaults to a hidden folder under the archive root (``STAGING_FOLDER``): the de-bag
writes each byte once, on the archive's filesystem, and the sync places the work with hard links and a rename
wherever the download's own bookkeeping lives (``open_works_dir`` never creates a missing archive root).

The resume journal (``SegmentJournal``): the segments whose members are written and verified, as JSON lines in
the temp dir: a first line with the identity of the bytes (an ETag and version, or a file's size and mtime; another
identity starts the journal afresh), then one line per finished segment — its range, the checksums of its bytes
(for the whole object's) and its members' sizes, CRCs and digests. A line is appended (one write, never an fsync)
when a segment verified; the one flush of the filesystem before the works are placed makes them durable. A killed
run re-reads only the segments that were in flight. A member taken from the journal is hashed again from disk (a
power loss may keep the line and lose the bytes): the segment is read again unless its CRC-32 matches, the one
check every member has (a plain zip's have no manifest digests), at several times sha512's speed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from onprem.finisher.debag.byte_source import CHUNK_SIZE
from onprem.finisher.debag.model import DebagSettings, MemberDigest, WorkPlan, zip_mtime
from onprem.finisher.debag.range_hash import Piece
from onprem.finisher.debag.segments import Segment
from onprem.finisher.errors import ArchiveUnavailable, Cleanup, FinisherError
from onprem.finisher.progress import Progress

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".debag-"
FAILED_PREFIX = ".debag-failed-"
JOURNAL_NAME = ".verified.jsonl"
#: the default staging folder of works, under the archive root: hidden, never an ``Archive{n}`` bucket the
#: sync script, the web copy or the archive check looks at
STAGING_FOLDER = ".bdrc-staging"


@dataclass(frozen=True)
class DebagJob:
    """One de-bag: the work its zip was fetched for, the staging folder its works go to, and how."""

    work_rid: str
    staging_dir: Path
    settings: DebagSettings = field(default_factory=lambda: DebagSettings())
    #: names the temp dir (the object version): a de-bag started again finds its journal there
    version_tag: str | None = None
    #: the works the zip must hold, exactly (None: ``{work_rid}``, what a fetched key holds)
    expected_rids: frozenset[str] | None = None
    progress: Progress | None = None


def temp_dir_for(staging_dir: Path, work_rid: str, version_tag: str | None) -> Path:
    """The temp dir of one work and object version: ``<staging>/.debag-<RID>-<version>``."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "", version_tag or "")[:40] or "unversioned"
    return staging_dir / f"{TEMP_PREFIX}{work_rid}-{tag}"


def open_works_dir(works_dir: Path, archive_root: Path, work_rid: str) -> Path:
    """Create ``works_dir`` (and the folders above it) and return it. Under ``archive_root`` it is created from
    inside the root, never the root itself: a missing root (an unmounted archive) raises ``ArchiveUnavailable``
    (retried once it is mounted), since creating it would fill the local disk under the mount point."""
    if not works_dir.is_relative_to(archive_root):
        works_dir.mkdir(parents=True, exist_ok=True)
        return works_dir
    try:
        root_fd = os.open(archive_root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise ArchiveUnavailable(work_rid, f"archive root {archive_root} does not exist (not mounted?): the staging "
                                           f"folder {works_dir} lives in it; never created, retried") from err
    try:
        relative = works_dir.relative_to(archive_root).parts
        for depth in range(1, len(relative) + 1):
            try:  # relative to the root's descriptor: a root unmounted since the open is never recreated
                os.mkdir(os.path.join(*relative[:depth]), dir_fd=root_fd)
            except FileExistsError:
                pass
    finally:
        os.close(root_fd)
    return works_dir


def place_works(plans: list[WorkPlan], temp_dir: Path, staging_dir: Path) -> None:
    """Create the zip's folders with their times, then rename each ``<tmp>/<RID>`` to ``<staging>/<RID>``."""
    for plan in plans:
        for member, rel in sorted(plan.dirs, key=lambda d: -len(d[1].parts)):
            folder = temp_dir / plan.work_rid / rel
            folder.mkdir(parents=True, exist_ok=True)  # empty folders of the zip exist in staging too
            mtime = zip_mtime(member.info)
            os.utime(folder, (mtime, mtime))
    for plan in plans:
        (temp_dir / plan.work_rid).mkdir(parents=True, exist_ok=True)  # a work of empty folders only
        final = staging_dir / plan.work_rid
        if final.exists():
            logger.warning("%s: replacing an earlier staging copy at %s", plan.work_rid, final,
                           extra={"work_rid": plan.work_rid})
            shutil.rmtree(final)
        os.rename(temp_dir / plan.work_rid, final)


def clean_up(err: BaseException, temp_dir: Path, work_rid: str, settings: DebagSettings) -> None:
    """Leave on disk what ``err``'s class says (``FinisherError.cleanup``): RESUME keeps the temp dir and its
    journal; EVIDENCE and DISCARD keep the temp dir as evidence (``keep_or_remove_evidence``); PURGE removes it.
    Anything else (a control-flow signal, a kill, a bug) is RESUME: ``work.failures.naming_failures`` keeps the
    evidence of what it names."""
    policy = err.cleanup if isinstance(err, FinisherError) else Cleanup.RESUME
    if policy is Cleanup.PURGE:
        shutil.rmtree(temp_dir, ignore_errors=True)
    elif policy in (Cleanup.EVIDENCE, Cleanup.DISCARD):
        keep_or_remove_evidence(temp_dir, work_rid, settings)


def keep_or_remove_evidence(temp_dir: Path, work_rid: str, settings: DebagSettings) -> None:
    """The temp dir renamed ``.debag-failed-<RID>-<version>-<epoch>`` (never swept), or removed when
    ``settings.keep_evidence`` is off."""
    if not temp_dir.exists():
        return
    if not settings.keep_evidence:
        shutil.rmtree(temp_dir, ignore_errors=True)
        return
    evidence = temp_dir.with_name(f"{FAILED_PREFIX}{temp_dir.name.removeprefix(TEMP_PREFIX)}-{int(time.time())}")
    os.rename(temp_dir, evidence)
    logger.warning("%s: de-bag failed; evidence kept in %s", work_rid, evidence, extra={"work_rid": work_rid})


def _file_crc(path: Path) -> int:
    """The CRC-32 of a file's bytes, as a zip's central directory gives it."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK_SIZE):
            crc = zlib.crc32(block, crc)
    return crc


class SegmentJournal:
    """Finished segments of one de-bag of one identity of bytes; ``record`` is safe from several threads."""

    def __init__(self, path: Path, identity: str) -> None:
        self.path, self.identity = path, identity
        self.entries: dict[tuple[int, int], tuple[list[Piece], dict[str, MemberDigest]]] = {}
        self._lock = threading.Lock()
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        first = json.dumps({"identity": identity})  # the first line as this class writes it
        if lines and lines[0] == first:
            for line in lines[1:]:
                try:
                    row = json.loads(line)
                    members = {m["name"]: MemberDigest(m["name"], m["size"], m["crc"], m["digests"])
                               for m in row["members"]}
                    pieces = [Piece(int(a), int(b), int(c)) for a, b, c in row["pieces"]]
                    self.entries[(row["start"], row["end"])] = (pieces, members)
                except (ValueError, KeyError, TypeError):
                    break  # a torn last line after a crash: what follows it is not trusted
            self._file = open(path, "a", encoding="utf-8")
        else:
            self._file = open(path, "w", encoding="utf-8")
            self._file.write(first + "\n")
            self._file.flush()

    def reusable(self, segment: Segment, temp_dir: Path,
                 algorithms: dict[str, tuple[str, ...]]) -> tuple[list[Piece], list[MemberDigest]] | None:
        """(checksums of its pieces, digests) of a journaled segment whose members are all still on disk as
        verified, else None."""
        entry = self.entries.get((segment.start, segment.end))
        if entry is None:
            return None
        pieces, members = entry
        found = []
        for span in segment.members:
            assert span.target is not None and span.plan is not None
            digest = members.get(span.target.member.name)
            wanted = algorithms.get(span.plan.work_rid, ())
            if (digest is None or digest.crc != span.info.CRC or digest.size != span.info.file_size
                    or not set(wanted) <= set(digest.digests)):
                return None
            target = temp_dir / span.plan.work_rid / span.target.target
            try:
                if target.stat().st_size != digest.size or _file_crc(target) != digest.crc:
                    return None
            except FileNotFoundError:
                return None
            found.append(digest)
        return pieces, found

    def record(self, segment: Segment, pieces: list[Piece], digests: list[MemberDigest]) -> None:
        """Append the line of a segment whose payload members (``digests``) verified (one write; no fsync)."""
        row = {"start": segment.start, "end": segment.end, "pieces": [[p.start, p.end, p.crc] for p in pieces],
               "members": [{"name": d.name, "size": d.size, "crc": d.crc, "digests": d.digests} for d in digests]}
        with self._lock:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def close(self) -> None:
        # the journal only saves work after a restart: failing to flush its tail (disk full) must not hide the
        # error that stopped the de-bag; a torn last line is ignored when the journal is read again
        with contextlib.suppress(OSError):
            self._file.close()
