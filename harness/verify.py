"""Check a work in the archive against its bag's manifest by re-hashing the archive copies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from contract.keys import archive_relpath_for_rid
from harness.bags import SampleWork


@dataclass(frozen=True)
class WorkVerification:
    """``problems`` is empty when every payload file is in the archive with its manifest's sha512."""

    work_rid: str
    archive_dir: Path
    files_checked: int
    bytes_checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def sha512_of(path: Path, chunk: int = 1 << 20) -> str:
    """The sha512 of the file at ``path``, read in ``chunk``-byte blocks."""
    digest = hashlib.sha512()
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_work_in_archive(archive_root: Path, work: SampleWork) -> WorkVerification:
    """Re-hash ``archive_root/Archive{n}/{NN}/{RID}/<payload path>`` for every file of the bag's manifest."""
    archive_dir = archive_root / archive_relpath_for_rid(work.work_rid)
    problems: list[str] = []
    files = nbytes = 0
    if not archive_dir.is_dir():
        problems.append(f"{work.work_rid}: not in the archive ({archive_dir} does not exist)")
    else:
        for relpath, expected in work.payload_sha512.items():
            copy = archive_dir / relpath
            if not copy.is_file():
                problems.append(f"{work.work_rid}: {relpath} missing from {archive_dir}")
                continue
            actual = sha512_of(copy)
            files, nbytes = files + 1, nbytes + copy.stat().st_size
            if actual != expected:
                problems.append(f"{work.work_rid}: checksum mismatch for {relpath} "
                                f"(sha512 expected {expected[:16]}…, got {actual[:16]}…)")
    return WorkVerification(work.work_rid, archive_dir, files, nbytes, tuple(problems))
