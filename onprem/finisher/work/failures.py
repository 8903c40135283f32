"""Exceptions a stage lets through that a retry cannot fix, turned into their named permanent errors.

The de-bag guards name these cases first (zip_safety, bag_manifest); this is the net under them, so a case a guard
misses is still refused with a cause, not retried as ``unexpected`` until SQS gives up.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator
from pathlib import Path

from onprem.finisher.errors import NameTooLong, PermanentError, UndecodableText

__all__ = ["named_failure", "naming_failures"]


def named_failure(err: BaseException, work_rid: str) -> PermanentError | None:
    """The named permanent error of an exception no stage named but a retry cannot fix; None for any other."""
    if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:
        name = err.filename if err.filename is not None else _file_in_traceback(err)
        return NameTooLong(work_rid, f"{name}: a file name over 255 bytes or a path over PATH_MAX "
                                     f"({err.strerror}): not de-bagged")
    if isinstance(err, UnicodeDecodeError):
        bad = err.object[err.start:err.end]
        return UndecodableText(work_rid, f"{_file_in_traceback(err)}: bytes {bad!r} at offset {err.start} do not "
                                         f"decode as {err.encoding}: not de-bagged")
    return None


_FILE_LOCALS = ("path", "target", "tag_path", "member", "name", "filename")


def _file_in_traceback(err: BaseException) -> str:
    """The file a failing frame was working on (the innermost local named like a path), for the message."""
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for local in _FILE_LOCALS:
            value = frame.f_locals.get(local)
            value = getattr(value, "filename", value)
            if isinstance(value, (str, Path)):
                return str(value)
    return "a file of the zip"


@contextlib.contextmanager
def naming_failures(work_rid: str, on_named: Callable[[], None]) -> Iterator[None]:
    """Re-raise what ``named_failure`` names as that error (after ``on_named``: keep the evidence)."""
    try:
        yield
    except Exception as err:
        named = named_failure(err, work_rid)
        if named is None:
            raise
        on_named()
        raise named from err
