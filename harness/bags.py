"""The one builder of BDRC work trees, BagIt bags and their zips, for the tests, the bench and the demo.

    from harness.bags import make_bdrc_bag_zip, build_sample_zip, make_streamed_bag_zip
    zip_path = make_bdrc_bag_zip(tmp_path, rids=["W1NLM4700"], algorithms=("sha256",))    # a test's bag
    sample = build_sample_zip(out_dir, SampleSpec("NLM", ("W1NLM4700",)))                  # a demo work
    bag = make_streamed_bag_zip(out_dir, "W1BENCH00", total_bytes=2**30, file_bytes=5 * 2**20)  # a bench bag
    bag = make_bdrc_profile_zip(out_dir, "W1BENCH05", total_bytes=2**30)   # the bench's real-shaped work

Three shapes (the bench's in two profiles), each kept byte for byte as its callers rely on it (sizes, member
order, offsets):
- a test's work: ``{RID}/{RID}-I1KG1/images/{RID}-I1KG1_0001.tif`` …, seeded bytes, bagged with bagit-python in
  any algorithms, zipped in sorted order (deflated unless told), optionally under one top folder;
- a demo work (``SampleSpec``): image groups of jpg/tif, seeded, bagged sha512 with ``BDRC-RID``, zipped stored
  in bdrc-bag's ``os.walk`` order;
- a bench bag: written straight into a stored zip in one pass (random bytes → hash → member), so a 4 GiB bag
  costs one write of 4 GiB, not a tree + ``bagit.make_bag`` + a zip; the ``bdrc`` profile
  (``make_bdrc_profile_zip``) is such a bag shaped like a real work: image groups of 50-400 KiB images in
  ``images/``, as many 1-8 MiB masters in ``archive/``, a few ``sources/``.
Edits of a built zip (a member dropped or tampered, a tag file rewritten) are in :mod:`harness.zip_edits`.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import bagit

from contract.keys import staging_key_for_rid, validate_rid

DEFAULT_RID = "W1NLM4700"
_JPEG_HEAD, _JPEG_TAIL = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00", b"\xff\xd9"
_TIFF_HEAD = b"II*\x00\x08\x00\x00\x00"
_BLOCK = 1 << 20


def image_group(rid: str, n: int = 1) -> str:
    """A BDRC image-group folder name: ``W1NLM4700-I1KG1``."""
    return f"{rid}-I1KG{n}"


def write_work_tree(
    parent: Path, rid: str = DEFAULT_RID, *, files_per_work: int = 3, file_size: int = 4096,
    extra_names: Iterable[str] = (), seed: int = 0,
) -> Path:
    """``parent/<rid>/<rid>-I1KG1/images/<rid>-I1KG1_0001.tif`` … plus ``sources/<name>`` for each extra name."""
    rng = random.Random(f"{rid}-{seed}")
    work_dir = parent / rid
    images = work_dir / image_group(rid) / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(1, files_per_work + 1):
        (images / f"{image_group(rid)}_{i:04d}.tif").write_bytes(rng.randbytes(file_size))
    for name in extra_names:
        path = work_dir / "sources" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(max(file_size // 4, 1)))
    return work_dir


def make_bagit_bag(work_dir: Path, algorithms: Sequence[str] = ("sha256",), *, processes: int = 1) -> bagit.Bag:
    """Bag ``work_dir`` in place with bagit-python (the payload moves under ``data/``; ``BDRC-RID`` in bag-info)."""
    return bagit.make_bag(str(work_dir), {"BDRC-RID": work_dir.name}, processes=processes,
                          checksums=list(algorithms))


def _walk_members(folder: Path) -> Iterator[Path]:
    # bdrc-bag's order: a folder's subfolders, then its files, then each subfolder in turn
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        yield from (Path(here) / name for name in dirs)
        yield from (Path(here) / name for name in sorted(files))


def zip_tree(zip_path: Path, folders: Sequence[tuple[str, Path]], *, compression: int = zipfile.ZIP_DEFLATED,
             walk_order: bool = False) -> Path:
    """Zip each ``(arcname, folder)`` with directory entries first, keeping file times.

    Members go in sorted path order, or with ``walk_order`` in bdrc-bag's ``os.walk`` order.
    """
    with zipfile.ZipFile(zip_path, "w", compression=compression) as zf:
        for arc_root, folder in folders:
            zf.write(folder, arcname=arc_root)
            for path in _walk_members(folder) if walk_order else sorted(folder.rglob("*")):
                zf.write(path, arcname=f"{arc_root}/{path.relative_to(folder).as_posix()}")
    return zip_path


def make_bdrc_bag_zip(
    tmp_path: Path, rids: Sequence[str] = (DEFAULT_RID,), algorithms: Sequence[str] = ("sha256",),
    compression: int = zipfile.ZIP_DEFLATED, files_per_work: int = 3, file_size: int = 4096, *,
    extra_names: Iterable[str] = (), top_folder: str | None = None, zip_name: str | None = None,
) -> Path:
    """A zip of one ``RID.bag/`` per RID (bagit-python bags), optionally under one top folder."""
    build = tmp_path / f"build-{'-'.join(rids)}"
    folders = []
    extra_names = tuple(extra_names)
    for rid in rids:
        work_dir = write_work_tree(build, rid, files_per_work=files_per_work, file_size=file_size,
                                   extra_names=extra_names)
        make_bagit_bag(work_dir, algorithms)
        arc_root = f"{top_folder}/{rid}.bag" if top_folder else f"{rid}.bag"
        folders.append((arc_root, work_dir))
    zip_path = tmp_path / (zip_name or f"{rids[0]}.bag.zip")
    zip_tree(zip_path, folders, compression=compression)
    shutil.rmtree(build)
    return zip_path


def make_bdrc_tool_zip(tmp_path: Path, rid: str = DEFAULT_RID, *, files_per_work: int = 3,
                       file_size: int = 4096, extra_names: Iterable[str] = ()) -> Path:
    """A zip made by ``bdrc-bag`` itself (``bag.bag_ops.bag``: sha512 manifests, stored, BDRC-RID in bag-info)."""
    from bag.bag_ops import bag as bdrc_bag

    work_dir = write_work_tree(tmp_path / "src", rid, files_per_work=files_per_work, file_size=file_size,
                               extra_names=extra_names)
    out_dir = tmp_path / "bdrc-bag-out"
    out_dir.mkdir(exist_ok=True)
    bdrc_bag(str(work_dir), str(out_dir), preserve_source=True, in_daemon=True)
    return out_dir / f"{rid}.bag.zip"


def make_plain_work_zip(tmp_path: Path, rids: Sequence[str] = (DEFAULT_RID,), *, files_per_work: int = 3,
                        file_size: int = 4096, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A work zip without a bag: ``RID/RID-I1KG1/images/…`` per RID."""
    build = tmp_path / "plain-build"
    folders = [(rid, write_work_tree(build, rid, files_per_work=files_per_work, file_size=file_size))
               for rid in rids]
    zip_path = zip_tree(tmp_path / f"{rids[0]}.zip", folders, compression=compression)
    shutil.rmtree(build)
    return zip_path


def zip_entries(zip_path: Path, entries: Sequence[tuple[str | zipfile.ZipInfo, bytes]], *,
                compression: int = zipfile.ZIP_STORED) -> Path:
    """A zip of exactly these members (names or prepared ZipInfo), for the safety rules' tests."""
    with zipfile.ZipFile(zip_path, "w", compression=compression) as zf:
        for name, content in entries:
            zf.writestr(name, content)
    return zip_path


# --- demo works: image groups of jpg/tif, bagged sha512, zipped stored as bdrc-bag does ---------------------------


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


def _image_bytes(rng: random.Random, size: int, suffix: str) -> bytes:
    if suffix == ".tif":
        return _TIFF_HEAD + rng.randbytes(max(size - len(_TIFF_HEAD), 0))
    return _JPEG_HEAD + rng.randbytes(max(size - len(_JPEG_HEAD) - len(_JPEG_TAIL), 0)) + _JPEG_TAIL


def write_image_work(parent: Path, spec: SampleSpec, work_rid: str) -> Path:
    """Write ``parent/{RID}/{RID}-I{digits}{nnn}/images/I…{nnnn}.jpg|tif``: incompressible images, seeded."""
    validate_rid(work_rid)
    rng = random.Random(f"{work_rid}/{spec.image_groups}/{spec.images_per_group}/{spec.image_bytes}")
    work_dir = parent / work_rid
    digits = "".join(c for c in work_rid if c.isdigit()) or "0"
    for group_index in range(1, spec.image_groups + 1):
        group = f"I{digits}{group_index:03d}"
        images = work_dir / f"{work_rid}-{group}" / "images"
        images.mkdir(parents=True)
        for number in range(1, spec.images_per_group + 1):
            suffix = ".tif" if number % 3 == 0 else ".jpg"
            size = spec.image_bytes + rng.randrange(0, max(spec.image_bytes // 4, 1))
            (images / f"{group}{number:04d}{suffix}").write_bytes(_image_bytes(rng, size, suffix))
    return work_dir


def build_sample_zip(out_dir: Path, spec: SampleSpec) -> SampleZip:
    """Build the bags of ``spec`` under ``out_dir/bags`` and their zip ``out_dir/{key RID}.bag.zip``."""
    bags_dir = out_dir / "bags"
    bags_dir.mkdir(parents=True, exist_ok=True)
    works, folders = [], []
    for rid in spec.work_rids:
        work_dir = write_image_work(bags_dir, spec, rid)
        bag = bagit.make_bag(str(work_dir), checksums=["sha512"],
                             bag_info={"BDRC-RID": rid, "Source-Organization": "Buddhist Digital Resource Center"})
        payload = {path.removeprefix("data/"): digests["sha512"] for path, digests in bag.payload_entries().items()}
        size = sum((work_dir / "data" / rel).stat().st_size for rel in payload)
        works.append(SampleWork(work_rid=rid, payload_sha512=dict(sorted(payload.items())), payload_bytes=size))
        folders.append((f"{rid}.bag", work_dir))
    zip_path = zip_tree(out_dir / f"{spec.work_rids[0]}.bag.zip", folders, compression=zipfile.ZIP_STORED,
                        walk_order=True)
    return SampleZip(path=zip_path, key_rid=spec.work_rids[0], collection=spec.collection, works=tuple(works))


# --- bench bags: written straight into a stored zip in one pass -------------------------------------------------


@dataclass(frozen=True)
class StreamedBag:
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


def _member_info(name: str, when: tuple[int, ...], mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when[:6])
    info.external_attr = mode << 16
    return info


def _random_member(zf: zipfile.ZipFile, name: str, size: int, when: tuple[int, ...],
                   algorithms: tuple[str, ...]) -> dict[str, str]:
    info = _member_info(name, when, 0o100644)
    info.compress_type, info.file_size = zipfile.ZIP_STORED, size
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


def _text_member(zf: zipfile.ZipFile, name: str, text: str, when: tuple[int, ...],
                 algorithms: tuple[str, ...]) -> dict[str, str]:
    payload = text.encode("utf-8")
    zf.writestr(_member_info(name, when, 0o100644), payload, compress_type=zipfile.ZIP_STORED)
    return {a: hashlib.new(a, payload).hexdigest() for a in algorithms}


def make_streamed_bag_zip(out_dir: Path, work_rid: str, *, total_bytes: int, file_bytes: int,
                          algorithms: tuple[str, ...] = ("sha512",)) -> StreamedBag:
    """Write ``out_dir/{RID}.bag.zip`` holding ``ceil(total/file)`` incompressible files of ``file_bytes``.

    What bdrc-bag makes: ``{RID}.bag/`` with directory entries, ``bagit.txt``, ``bag-info.txt`` (``BDRC-RID``,
    ``Payload-Oxum``), a manifest and a tag manifest per algorithm, the payload under ``data/images/{RID}-I1KG1/``.
    """
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
            directory = _member_info(f"{root}/{folder}/" if folder else f"{root}/", when, 0o40755)
            directory.external_attr |= 0x10
            zf.writestr(directory, b"")
        for number in range(1, files + 1):
            size = min(file_bytes, total_bytes - payload_bytes) if number == files else file_bytes
            rel = f"{image_dir}/{group}{number:04d}.tif"
            manifest.append((rel, _random_member(zf, f"{root}/{rel}", size, when, algorithms)))
            payload_bytes += size
        _tag_members(zf, root, work_rid, manifest, payload_bytes, when, algorithms)
    return StreamedBag(path=path, work_rid=work_rid, files=files, payload_bytes=payload_bytes, algorithms=algorithms)


def _tag_members(zf: zipfile.ZipFile, root: str, work_rid: str, manifest: list[tuple[str, dict[str, str]]],
                 payload_bytes: int, when: tuple[int, ...], algorithms: tuple[str, ...]) -> None:
    """bagit.txt, bag-info.txt, the manifests and tag manifests of a streamed bag, after its payload."""
    bagit_txt = "BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8\n"
    tags = {"bagit.txt": _text_member(zf, f"{root}/bagit.txt", bagit_txt, when, algorithms)}
    info = (f"BDRC-RID: {work_rid}\nBagging-Date: {datetime.now(UTC):%Y-%m-%d}\n"
            f"Payload-Oxum: {payload_bytes}.{len(manifest)}\nSource-Organization: Buddhist Digital Resource Center\n")
    tags["bag-info.txt"] = _text_member(zf, f"{root}/bag-info.txt", info, when, algorithms)
    for algorithm in algorithms:
        lines = "".join(f"{digests[algorithm]}  {rel}\n" for rel, digests in manifest)
        tags[f"manifest-{algorithm}.txt"] = _text_member(zf, f"{root}/manifest-{algorithm}.txt", lines, when,
                                                         algorithms)
    for algorithm in algorithms:
        lines = "".join(f"{digests[algorithm]}  {name}\n" for name, digests in tags.items())
        _text_member(zf, f"{root}/tagmanifest-{algorithm}.txt", lines, when, algorithms)


def bdrc_profile_files(work_rid: str, total_bytes: int, *, groups: int = 4, seed: int = 21) -> list[tuple[str, int]]:
    """The payload of the ``bdrc`` profile, a real work's shape: per image group, ``images/`` of 50-400 KiB
    images and as many ``archive/`` masters of 1-8 MiB; three ``sources/`` files. Sizes from ``seed``;
    about ``total_bytes`` in all. Returns ``(path under data/, size)`` in the zip's member order."""
    rng = random.Random(f"bdrc/{work_rid}/{seed}")
    sources = [(f"sources/{work_rid}-{n}.pdf", rng.randrange(256 << 10, 4 << 20)) for n in (1, 2, 3)]
    pairs: list[tuple[int, int]] = []
    left = total_bytes - sum(size for _, size in sources)
    while left > 0:
        image, master = rng.randrange(50 << 10, 400 << 10), rng.randrange(1 << 20, 8 << 20)
        pairs.append((image, master))
        left -= image + master
    per_group = -(-len(pairs) // groups)
    archive, images = [], []
    for n, (image, master) in enumerate(pairs):
        group = f"I{n // per_group + 1}KG{n // per_group + 1}"
        page = f"{group}{n % per_group + 1:04d}"
        archive.append((f"archive/{work_rid}-{group}/{page}.tif", master))
        images.append((f"images/{work_rid}-{group}/{page}.{'tif' if n % 3 else 'jpg'}", image))
    return [*archive, *images, *sources]


def make_bdrc_profile_zip(out_dir: Path, work_rid: str, *, total_bytes: int,
                          algorithms: tuple[str, ...] = ("sha512",), seed: int = 21) -> StreamedBag:
    """``out_dir/{RID}.bag.zip`` of the ``bdrc`` profile (:func:`bdrc_profile_files`), stored, written in one
    pass as :func:`make_streamed_bag_zip` writes its bags (random bytes, hashed as they are written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    members = bdrc_profile_files(work_rid, total_bytes, seed=seed)
    when = time.localtime()
    root = f"{work_rid}.bag"
    folders = sorted({"data", *(f"data/{PurePosixPath(rel).parent}" for rel, _ in members),
                      *(f"data/{PurePosixPath(rel).parts[0]}" for rel, _ in members)})
    path = out_dir / f"{work_rid}.bag.zip"
    manifest: list[tuple[str, dict[str, str]]] = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for folder in ("", *folders):
            directory = _member_info(f"{root}/{folder}/" if folder else f"{root}/", when, 0o40755)
            directory.external_attr |= 0x10
            zf.writestr(directory, b"")
        for rel, size in members:
            manifest.append((f"data/{rel}", _random_member(zf, f"{root}/data/{rel}", size, when, algorithms)))
        payload_bytes = sum(size for _, size in members)
        _tag_members(zf, root, work_rid, manifest, payload_bytes, when, algorithms)
    return StreamedBag(path=path, work_rid=work_rid, files=len(members), payload_bytes=payload_bytes,
                       algorithms=algorithms)
