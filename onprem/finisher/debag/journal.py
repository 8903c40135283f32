"""A member's digests read back from disk: a member taken from the resume journal is hashed again first."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_SIZE = 1 << 20


def file_digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Hex digests of a file on disk (a journaled member re-checked after a restart)."""
    hashers = {alg: hashlib.new(alg) for alg in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {alg: h.hexdigest() for alg, h in hashers.items()}
