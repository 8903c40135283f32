"""macOS junk in a zip: set aside before the guard, never extracted, never a reason to refuse the zip.

Finder and Archive Utility add ``__MACOSX/…/._name`` (AppleDouble: resource forks and extended attributes)
under a top-level ``__MACOSX/`` folder, and ``.DS_Store`` files (folder view settings) wherever a folder was
opened. Users expect a zip made that way to be taken: entries under ``__MACOSX/`` and ``.DS_Store`` files outside
every bag are ignored and logged. Inside a bag (a folder holding ``bagit.txt``) a ``.DS_Store`` is a file like any
other: in the payload it is listed in no manifest (BagIncomplete), as bagit-python would say.

Junk is recognized from zipfile's reading of the raw name (these names are ASCII), so a junk name that would not
pass the guard (not UTF-8, a control character) cannot refuse the zip either.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from pathlib import PurePosixPath

from onprem.finisher.debag.model import raw_name

__all__ = ["MACOSX_DIR", "log_junk", "split_junk"]

logger = logging.getLogger(__name__)

MACOSX_DIR = "__MACOSX"
DS_STORE = ".DS_Store"
_BAG_DECLARATION = "bagit.txt"


def is_macosx_name(name: str) -> bool:
    """Whether ``name`` lies under the zip's top-level ``__MACOSX/`` folder (or is that folder)."""
    return name.split("/", 1)[0] == MACOSX_DIR


def split_junk(infos: Sequence[zipfile.ZipInfo]) -> tuple[list[zipfile.ZipInfo], list[zipfile.ZipInfo]]:
    """(kept, junk): junk is ``__MACOSX/…`` and every ``.DS_Store`` that lies in no bag's folder."""
    bags = {PurePosixPath(info.orig_filename).parent for info in infos
            if _last(info.orig_filename) == _BAG_DECLARATION and not is_macosx_name(info.orig_filename)}
    kept: list[zipfile.ZipInfo] = []
    junk: list[zipfile.ZipInfo] = []
    for info in infos:
        name = info.orig_filename
        if is_macosx_name(name) or (_last(name) == DS_STORE and not _in_a_bag(name, bags)):
            junk.append(info)
        else:
            kept.append(info)
    return kept, junk


def _last(name: str) -> str:
    return name.rpartition("/")[2]  # string work: no path object per entry of a large directory


def _in_a_bag(name: str, bags: set[PurePosixPath]) -> bool:
    return any(parent in bags for parent in PurePosixPath(name).parents)


def log_junk(junk: Sequence[zipfile.ZipInfo], work_rid: str) -> None:
    """One WARNING naming how many entries were ignored and one of them (nothing when there is none)."""
    if not junk:
        return
    files = [info for info in junk if not info.is_dir()]
    first = (files or list(junk))[0]
    # junk names are never guarded: shown as UTF-8 where they are (Finder's are, unflagged), escaped by %r
    example = raw_name(first).decode("utf-8", errors="backslashreplace")
    logger.warning("%s: %d macOS entries ignored (__MACOSX/, .DS_Store outside the bag; never extracted), e.g. %r",
                   work_rid, len(junk), example, extra={"work_rid": work_rid, "ignored_entries": len(junk)})
