"""De-bag a zip on the local disk (``finisher ingest``, ``finisher watch``) into the staging layout with BagIt
fixity: the one path of ``debag.ranged``, which the fetch takes too (byte ranges of the S3 object, ``fetch_debag``),
here reading the file through ``byte_source.FileSource``. Nothing reaches the final layout unless every work
verified.
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

    ``expected_rids``: the works the zip must hold, exactly (``DebagJob.expected_rids``). Raises what
    ``debag_source`` raises (UnsafeArchive, CorruptArchive, BagInvalid, ChecksumMismatch, UnexpectedWork …), and
    CorruptArchive when the file cannot be opened; what stays on disk is the error's ``cleanup``.
    """
    settings = settings or DebagSettings()
    job = DebagJob(work_rid, staging_dir, settings, version_tag,
                   frozenset(expected_rids) if expected_rids is not None else None, progress)
    try:
        source = FileSource(zip_path)
    except OSError as err:
        raise CorruptArchive(work_rid, f"unreadable zip {zip_path.name}: {err}") from err
    return debag_source(source, job, RangeReading(concurrency=settings.workers))

