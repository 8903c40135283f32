"""The journal of a download: which parts of ``<name>.part`` are on disk and fsynced, for which object version.

A JSON sidecar ``<name>.part.json`` rewritten atomically (tmp file, fsync, rename) after each part's bytes
are fsynced. A journal written for another ETag, version, size or part size is not trusted: the download
starts again from zero.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

PART_SUFFIX = ".part"
JOURNAL_SUFFIX = ".part.json"
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class DownloadIdentity:
    """What a journal's parts belong to."""

    bucket: str
    key: str
    etag: str
    version_id: str | None
    size: int
    part_size: int


class FetchJournal:
    """Completed part numbers of one download, persisted beside the ``.part`` file."""

    def __init__(self, path: Path, identity: DownloadIdentity, done: set[int] | None = None) -> None:
        self.path, self.identity = path, identity
        self.done: set[int] = set(done or ())
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, identity: DownloadIdentity) -> FetchJournal:
        """The journal at ``path`` when it belongs to ``identity``, else an empty one."""
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("identity") == asdict(identity):
                return cls(path, identity, {int(n) for n in stored.get("done", [])})
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        return cls(path, identity)

    def mark_done(self, part_number: int) -> None:
        """Record a part whose bytes are already fsynced; the journal itself is replaced atomically."""
        with self._lock:
            self.done.add(part_number)
            body = json.dumps({"identity": asdict(self.identity), "done": sorted(self.done)})
            tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
