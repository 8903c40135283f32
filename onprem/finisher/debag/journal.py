"""The de-bag's journal of members already extracted and verified: a killed de-bag resumes from it."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from onprem.finisher.debag.model import MemberDigest, SafeMember

CHUNK_SIZE = 1 << 20


def file_digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Hex digests of a file on disk (a journaled member re-checked after a restart)."""
    hashers = {alg: hashlib.new(alg) for alg in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {alg: h.hexdigest() for alg, h in hashers.items()}


class VerifiedJournal:
    """Append-only JSON lines of members already extracted and verified (skipped after a restart).

    Lines are not fsynced (a killed process keeps the page cache; only a power loss loses it): a member taken
    from the journal after a restart is hashed again from disk and redone unless it still has its digests.
    Durability comes from one ``sync_filesystem`` before the works move into place (``DebagSettings.fsync``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, MemberDigest] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["name"]] = MemberDigest(row["name"], row["size"], row["crc"], row["digests"])
                except (ValueError, KeyError, TypeError):
                    break  # a torn last line after a crash: what follows it is not trusted
        self._file = open(path, "a", encoding="utf-8")

    def reusable(self, member: SafeMember, target: Path, algorithms: tuple[str, ...]) -> MemberDigest | None:
        """The journaled digest when the member is unchanged and its file on disk still has that size and those
        digests (hashed again: the journal line may have outlived the file's bytes after a power loss)."""
        entry = self.entries.get(member.name)
        if (entry is None or entry.crc != member.info.CRC or entry.size != member.info.file_size
                or not set(algorithms) <= set(entry.digests)):
            return None
        try:
            if target.stat().st_size != entry.size:
                return None
            on_disk = file_digests(target, tuple(entry.digests))
        except FileNotFoundError:
            return None
        return entry if on_disk == entry.digests else None

    def record(self, digest: MemberDigest) -> None:
        self._file.write(json.dumps({"name": digest.name, "size": digest.size, "crc": digest.crc,
                                     "digests": digest.digests}) + "\n")
        self._file.flush()
        self.entries[digest.name] = digest

    def close(self) -> None:
        # the journal only saves work after a restart: failing to flush its tail (disk full) must not hide the
        # error that stopped the de-bag; a torn last line is ignored when the journal is read again
        with contextlib.suppress(OSError):
            self._file.close()
