"""What every bad-input case module shares: ``BadZip`` and the builders of a good zip to break.

The cases live in ``bad_inputs.py`` (the first set) and in one module per concern beside it
(``bad_inputs_*.py``), each exporting ``CASES``; ``bad_inputs.BAD_ZIPS`` gathers them all.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.bags import make_bdrc_bag_zip
from harness.zip_edits import read_members, rewrite_zip
from onprem.finisher.errors import FinisherError

FILES, FILE_SIZE = 2, 2048


@dataclass(frozen=True)
class BadZip:
    """One bad input: how to build it and the named error (hence the ledger cause) it must end with."""

    name: str
    build: Callable[[Path, str], Path]
    error: type[FinisherError]
    #: needs ``require_strong_checksums`` (the sha256-required policy)
    strong_checksums: bool = False

    @property
    def cause(self) -> str:
        return self.error.cause


def good_zip(tmp: Path, rid: str, *, algorithms: tuple[str, ...] = ("sha256",)) -> Path:
    """A valid bag zip ``<tmp>/<rid>.bag.zip`` of ``FILES`` payload files."""
    folder = tmp / rid
    folder.mkdir(parents=True, exist_ok=True)
    return make_bdrc_bag_zip(folder, rids=[rid], algorithms=algorithms, files_per_work=FILES, file_size=FILE_SIZE,
                             compression=zipfile.ZIP_STORED)


def payload_member(rid: str, n: int = 1) -> str:
    return f"{rid}.bag/data/{rid}-I1KG1/images/{rid}-I1KG1_{n:04d}.tif"


def edit_member(zip_path: Path, member: str, edit: Callable[[bytes], bytes]) -> None:
    rewrite_zip(zip_path, [(i, edit(c) if i.filename == member else c) for i, c in read_members(zip_path)])


def with_member(name: str | zipfile.ZipInfo, content: bytes = b"x") -> Callable[[Path, str], Path]:
    def build(tmp: Path, rid: str) -> Path:
        zip_path = good_zip(tmp, rid)
        member = name.replace("{rid}", rid) if isinstance(name, str) else name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicates it is asked to write
            with zipfile.ZipFile(zip_path, "a") as zf:
                zf.writestr(member, content)
        return zip_path

    return build
