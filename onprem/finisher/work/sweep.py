"""Start-up sweep of the staging root: temp files no fetch + de-bag can resume from.

Looked at: the staging root, each folder in it (``works``; ``downloads``, an older finisher's) and each staging
slot in those (one per object version: ``works/<slot>/``, ``downloads/<slot>/``). Kept: ``.debag-<RID>-<version>``
dirs (resumable) until they are older than ``max_age_seconds``, and ``.debag-failed-…`` evidence (never swept). A
whole-zip download an older finisher left (``<name>.part``, ``.part.json``, ``.part.json.tmp``: nothing resumes
from them now) is removed after the grace period, as is a slot left empty and then an empty ``downloads`` folder
(nothing makes one now).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from onprem.finisher.debag.staging import FAILED_PREFIX, TEMP_PREFIX

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 7 * 24 * 3600
#: an incomplete pair younger than this may be another finisher's download that is just starting (shared staging)
DEFAULT_GRACE = 3600
#: the files of an older finisher's whole-zip download (the zip is never downloaded now)
_OLD_DOWNLOAD = (".part", ".part.json", ".part.json.tmp")
#: the folder of an older finisher's whole-zip downloads (``<staging>/downloads/<slot>/``): nothing writes there now
_OLD_DOWNLOADS_DIR = "downloads"
#: a staging slot's name (stages.staging_slot): only these are looked into, never a staged work's own folders
_SLOT = re.compile(r"[0-9a-f]{16}")


def sweep_orphans(staging_root: Path, *, max_age_seconds: float = DEFAULT_MAX_AGE,
                  grace_seconds: float = DEFAULT_GRACE, now: Callable[[], float] = time.time) -> list[Path]:
    """Remove orphan temp files under ``staging_root`` (one level down as well); return what was removed."""
    if not staging_root.is_dir():
        return []
    removed: list[Path] = []
    tops = [p for p in staging_root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    slots = [p for top in tops for p in top.iterdir() if p.is_dir() and _SLOT.fullmatch(p.name)]
    # folders judged by their age before the sweep: removing what is in them makes them look new
    settled = [p for p in [*slots, *(t for t in tops if t.name == _OLD_DOWNLOADS_DIR)]
               if _older_than(p, now() - grace_seconds)]
    for folder in [staging_root, *tops, *slots]:
        for path in sorted(folder.iterdir()):
            if _is_orphan(path, now() - max_age_seconds) and _older_than(path, now() - grace_seconds):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    for folder in settled:  # the slots first: a downloads folder they leave empty goes as well
        if not any(folder.iterdir()):
            folder.rmdir()
            removed.append(folder)
    for path in removed:
        logger.info("swept orphan temp file %s", path, extra={"path": str(path)})
    return removed


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def _is_orphan(path: Path, cutoff: float) -> bool:
    name = path.name
    if name.endswith(_OLD_DOWNLOAD) and path.is_file():
        return True
    if path.is_dir() and name.startswith(TEMP_PREFIX) and not name.startswith(FAILED_PREFIX):
        return path.stat().st_mtime < cutoff
    return False
