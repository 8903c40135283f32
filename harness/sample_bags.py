"""Small but real BDRC bags: image-like incompressible files, bagit (sha512, ``BDRC-RID``), zipped like bdrc-bag.

A work folder ``{RID}/{RID}-I{group}/images/{group}{nnnn}.jpg|tif`` becomes a bag whose payload is under
``data/``; the zip holds one or more ``{RID}.bag/`` folders, stored (images do not compress), with directory
entries. Content is derived from a seed, so the same spec gives the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bagit

from contract.keys import staging_key_for_rid, validate_rid

CHECKSUMS = ("sha512",)
_JPEG_HEAD, _JPEG_TAIL = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00", b"\xff\xd9"
_TIFF_HEAD = b"II*\x00\x08\x00\x00\x00"


@dataclass(frozen=True)
class SampleWork:
    """One bagged work: its payload paths (relative to ``data/``) and their sha512."""

    work_rid: str
    payload_sha512: dict[str, str]
    payload_bytes: int

    @property
    def files(self) -> int:
        return len(self.payload_sha512)


@dataclass(frozen=True)
class SampleZip:
    """A zip of one or more bags, named after ``key_rid`` (the RID of its staging key)."""

    path: Path
    key_rid: str
    collection: str
    works: tuple[SampleWork, ...]

    @property
    def staging_key(self) -> str:
        return staging_key_for_rid(self.key_rid)

    @property
    def size(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class SampleSpec:
    """What to build: the zip's collection and the RIDs of the bags it holds (the first one names the zip)."""

    collection: str
    work_rids: tuple[str, ...]
    image_groups: int = 2
    images_per_group: int = 3
    image_bytes: int = 64 * 1024


#: the demo's four zips, one work each (a staging key holds its own work only): two in the FPL bucket
DEMO_SPECS = (
    SampleSpec("NLM", ("W1NLM4700",)),
    SampleSpec("FPL", ("W1FPL2025",)),
    SampleSpec("FPL", ("W1FPL2026",)),
    SampleSpec("BDRC", ("W22084",), image_groups=3),
)


def _image_bytes(rng: random.Random, size: int, suffix: str) -> bytes:
    if suffix == ".tif":
        return _TIFF_HEAD + rng.randbytes(max(size - len(_TIFF_HEAD), 0))
    return _JPEG_HEAD + rng.randbytes(max(size - len(_JPEG_HEAD) - len(_JPEG_TAIL), 0)) + _JPEG_TAIL


def write_work_folder(parent: Path, work_rid: str, *, image_groups: int = 2, images_per_group: int = 3,
                      image_bytes: int = 64 * 1024) -> Path:
    """Write ``parent/{RID}`` with ``image_groups`` image groups of incompressible jpg/tif files."""
    validate_rid(work_rid)
    rng = random.Random(f"{work_rid}/{image_groups}/{images_per_group}/{image_bytes}")
    work_dir = parent / work_rid
    digits = "".join(c for c in work_rid if c.isdigit()) or "0"
    for group_index in range(1, image_groups + 1):
        group = f"I{digits}{group_index:03d}"
        images = work_dir / f"{work_rid}-{group}" / "images"
        images.mkdir(parents=True)
        for number in range(1, images_per_group + 1):
            suffix = ".tif" if number % 3 == 0 else ".jpg"
            size = image_bytes + rng.randrange(0, max(image_bytes // 4, 1))
            (images / f"{group}{number:04d}{suffix}").write_bytes(_image_bytes(rng, size, suffix))
    return work_dir


def make_bdrc_bag(work_dir: Path, work_rid: str) -> SampleWork:
    """Turn ``work_dir`` into a bag in place (sha512 manifests, ``BDRC-RID`` in bag-info.txt)."""
    bag = bagit.make_bag(
        str(work_dir), bag_info={"BDRC-RID": work_rid, "Source-Organization": "Buddhist Digital Resource Center"},
        checksums=list(CHECKSUMS),
    )
    payload = {path.removeprefix("data/"): digests["sha512"] for path, digests in bag.payload_entries().items()}
    size = sum((work_dir / "data" / rel).stat().st_size for rel in payload)
    return SampleWork(work_rid=work_rid, payload_sha512=dict(sorted(payload.items())), payload_bytes=size)


def zip_bags(bag_dirs: Sequence[tuple[str, Path]], zip_path: Path) -> Path:
    """Zip each ``(rid, bag_dir)`` under ``{rid}.bag/`` (stored, with directory entries), as bdrc-bag does."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for rid, bag_dir in bag_dirs:
            root = Path(f"{rid}.bag")
            archive.write(bag_dir, arcname=str(root))
            for folder, dirs, files in os.walk(bag_dir):
                dirs.sort()
                here = Path(folder)
                for name in dirs:
                    archive.write(here / name, arcname=str(root / (here / name).relative_to(bag_dir)))
                for name in sorted(files):
                    archive.write(here / name, arcname=str(root / (here / name).relative_to(bag_dir)))
    return zip_path


def build_sample_zip(out_dir: Path, spec: SampleSpec) -> SampleZip:
    """Build the bags of ``spec`` under ``out_dir/bags`` and their zip ``out_dir/{key RID}.bag.zip``."""
    bags_dir = out_dir / "bags"
    bags_dir.mkdir(parents=True, exist_ok=True)
    works, bag_dirs = [], []
    for rid in spec.work_rids:
        work_dir = write_work_folder(bags_dir, rid, image_groups=spec.image_groups,
                                     images_per_group=spec.images_per_group, image_bytes=spec.image_bytes)
        works.append(make_bdrc_bag(work_dir, rid))
        bag_dirs.append((rid, work_dir))
    zip_path = zip_bags(bag_dirs, out_dir / f"{spec.work_rids[0]}.bag.zip")
    return SampleZip(path=zip_path, key_rid=spec.work_rids[0], collection=spec.collection, works=tuple(works))


def sha512_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()
