"""The resume journal of one de-bag: the segments whose members are written and verified, one line per segment.

JSON lines in the temp dir: a first line with the identity of the bytes (an ETag and version, or a file's size and
mtime; another identity starts the journal afresh), then one line per finished segment — its range, the checksums
of its bytes (for the whole object's) and its members' sizes, CRCs and digests. A line is appended (one write,
never an fsync) when a segment verified; the one flush of the filesystem before the works are placed makes them
durable. A killed run re-reads only the segments that were in flight. A member taken from the journal is hashed
again from disk (a power loss may keep the line and lose the bytes): the segment is read again unless it matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from pathlib import Path

from onprem.finisher.debag.model import MemberDigest
from onprem.finisher.debag.range_hash import Piece
from onprem.finisher.debag.segments import Segment


class SegmentJournal:
    """Finished segments of one de-bag of one identity of bytes; ``record`` is safe from several threads."""

    def __init__(self, path: Path, identity: str) -> None:
        self.path, self.identity = path, identity
        self.entries: dict[tuple[int, int], tuple[list[Piece], dict[str, MemberDigest]]] = {}
        self._lock = threading.Lock()
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if lines and _identity(lines[0]) == identity:
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
            self._file.write(json.dumps({"identity": identity}) + "\n")
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
                if target.stat().st_size != digest.size:
                    return None
                algorithm = min(digest.digests, default=None)  # one is enough to see bytes a power loss took
                if algorithm is not None and _hex_digest(target, algorithm) != digest.digests[algorithm]:
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


def _identity(line: str) -> object:
    try:
        return json.loads(line).get("identity")
    except (ValueError, AttributeError):
        return None


def _hex_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()
