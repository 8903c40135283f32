"""De-bag: extract a BDRC zip into the staging layout with BagIt fixity, reading the payload once.

The zip is read through a byte source (``debag.byte_source``): a local file here (``finisher ingest``,
``finisher watch``), byte ranges of the S3 object in the fetch (``fetch_debag``); both take the one path of
``debag.ranged``: central directory → ``check_archive`` (one guard per member) → ``plan_works`` (bags or plain
work folders; exactly the expected works) → tag files first → payload segments in parallel, each member written
once at its final path, hashed with every manifest algorithm while it is written → manifests, tag manifests,
Payload-Oxum and completeness checked → one flush of the filesystem (``DebagSettings.fsync``) → each
``<tmp>/<RID>`` renamed to ``<staging>/<RID>``. Nothing reaches the final layout unless every work verified.

Crash safety without a wait per file: the segment journal's lines and the written files are not fsynced one by
one (a killed process keeps the page cache); a member taken from the journal after a restart is hashed again
from disk and read again unless it still matches (a power loss may have kept the line and lost the bytes).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from onprem.finisher.debag.byte_source import FileSource
from onprem.finisher.debag.model import DebagResult, DebagSettings
from onprem.finisher.debag.ranged import RangeReading, debag_source
from onprem.finisher.debag.staging import DebagJob
from onprem.finisher.errors import CorruptArchive
from onprem.finisher.progress import Progress


def debag_archive(
    zip_path: Path, work_rid: str, staging_dir: Path, settings: DebagSettings | None = None, *,
    version_tag: str | None = None, progress: Progress | None = None, expected_rids: Iterable[str] | None = None,
) -> DebagResult:
    """Extract and verify every work of ``zip_path`` into ``<staging_dir>/<RID>/``; the zip is never modified.

    ``expected_rids``: the works the zip must hold, exactly (default ``{work_rid}``, what a fetched key holds;
    a hand-delivered zip of several works names them all). A zip named ``*.bag.zip`` must hold bags.
    Raises a PermanentError subclass (UnsafeArchive, CorruptArchive, BagInvalid, ChecksumMismatch,
    UnexpectedWork …) naming the work and the file; then nothing is left in the final layout and the temp dir
    is kept as evidence (``.debag-failed-…``) or removed, per ``settings.keep_evidence``.
    """
    settings = settings or DebagSettings()
    job = DebagJob(work_rid, staging_dir, settings, version_tag,
                   frozenset(expected_rids) if expected_rids is not None else None, progress)
    try:
        source = FileSource(zip_path)
    except OSError as err:
        raise CorruptArchive(work_rid, f"unreadable zip {zip_path.name}: {err}") from err
    return debag_source(source, job, RangeReading(concurrency=settings.workers), archive=zip_path)

