"""Benchmark bags, generated on the fly: a BDRC work of incompressible files, bagged (sha512) and zipped stored.

Written straight into the zip in one pass (random bytes → hash → zip member), so a 4 GiB bag costs one write of
4 GiB, not the work tree + ``bagit.make_bag`` + zip. The result is what bdrc-bag makes: ``{RID}.bag/`` with
directory entries, ``bagit.txt``, ``bag-info.txt`` (``BDRC-RID``, ``Payload-Oxum``), ``manifest-sha512.txt``,
``tagmanifest-sha512.txt`` and the payload under ``data/images/{RID}-I1KG1/``. Images are already compressed,
hence random bytes and ZIP_STORED. Nothing here is ever committed: callers pass a temp dir.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["BenchBag", "make_bag_zip"]

_BLOCK = 1 << 20


@dataclass(frozen=True)
class BenchBag:
    """A generated ``{RID}.bag.zip``: ``payload_bytes`` in ``files`` files, ``zip_bytes`` on disk."""

    path: Path
    work_rid: str
    files: int
    payload_bytes: int
    algorithms: tuple[str, ...]

    @property
    def zip_bytes(self) -> int:
        return self.path.stat().st_size

    @property
    def label(self) -> str:
        return f"{self.payload_bytes / 2**20:.0f} MiB, {self.files} x {self.payload_bytes / self.files / 2**10:.0f} KiB"


def _dir_entry(zf: zipfile.ZipFile, name: str, when: tuple[int, ...]) -> None:
    info = zipfile.ZipInfo(name.rstrip("/") + "/", date_time=when[:6])
    info.external_attr = (0o40755 << 16) | 0x10
    zf.writestr(info, b"")


def _file_entry(zf: zipfile.ZipFile, name: str, size: int, when: tuple[int, ...],
                algorithms: tuple[str, ...]) -> dict[str, str]:
    info = zipfile.ZipInfo(name, date_time=when[:6])
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    hashes = [hashlib.new(a) for a in algorithms]
    with zf.open(info, "w", force_zip64=size > 2**31) as member:
        left = size
        while left:
            block = os.urandom(min(_BLOCK, left))
            for h in hashes:
                h.update(block)
            member.write(block)
            left -= len(block)
    return {a: h.hexdigest() for a, h in zip(algorithms, hashes, strict=True)}


def _text_entry(zf: zipfile.ZipFile, name: str, text: str, when: tuple[int, ...],
                algorithms: tuple[str, ...]) -> dict[str, str]:
    payload = text.encode("utf-8")
    info = zipfile.ZipInfo(name, date_time=when[:6])
    info.external_attr = 0o100644 << 16
    zf.writestr(info, payload, compress_type=zipfile.ZIP_STORED)
    return {a: hashlib.new(a, payload).hexdigest() for a in algorithms}


def make_bag_zip(out_dir: Path, work_rid: str, *, total_bytes: int, file_bytes: int,
                 algorithms: tuple[str, ...] = ("sha512",)) -> BenchBag:
    """Write ``out_dir/{RID}.bag.zip`` holding ``ceil(total/file)`` incompressible files of ``file_bytes``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = max(1, -(-total_bytes // file_bytes))
    when = time.localtime()
    root, group = f"{work_rid}.bag", f"{work_rid}-I1KG1"
    image_dir = f"data/images/{group}"
    path = out_dir / f"{work_rid}.bag.zip"
    manifest: list[tuple[str, dict[str, str]]] = []
    payload_bytes = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for folder in ("", "data", "data/images", image_dir):
            _dir_entry(zf, f"{root}/{folder}" if folder else root, when)
        for number in range(1, files + 1):
            size = min(file_bytes, total_bytes - payload_bytes) if number == files else file_bytes
            rel = f"{image_dir}/{group}{number:04d}.tif"
            manifest.append((rel, _file_entry(zf, f"{root}/{rel}", size, when, algorithms)))
            payload_bytes += size
        tags: dict[str, dict[str, str]] = {}
        tags["bagit.txt"] = _text_entry(zf, f"{root}/bagit.txt",
                                        "BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8\n", when, algorithms)
        info = (f"BDRC-RID: {work_rid}\nBagging-Date: {datetime.now(UTC):%Y-%m-%d}\n"
                f"Payload-Oxum: {payload_bytes}.{files}\nSource-Organization: Buddhist Digital Resource Center\n")
        tags["bag-info.txt"] = _text_entry(zf, f"{root}/bag-info.txt", info, when, algorithms)
        for algorithm in algorithms:
            lines = "".join(f"{digests[algorithm]}  {rel}\n" for rel, digests in manifest)
            tags[f"manifest-{algorithm}.txt"] = _text_entry(zf, f"{root}/manifest-{algorithm}.txt", lines, when,
                                                            algorithms)
        for algorithm in algorithms:
            lines = "".join(f"{digests[algorithm]}  {name}\n" for name, digests in tags.items())
            _text_entry(zf, f"{root}/tagmanifest-{algorithm}.txt", lines, when, algorithms)
    return BenchBag(path=path, work_rid=work_rid, files=files, payload_bytes=payload_bytes, algorithms=algorithms)
