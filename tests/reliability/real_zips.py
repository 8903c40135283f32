"""Bag zips as other tools write them: Info-ZIP ``zip`` and 7-Zip run for real, macOS Archive Utility's shape.

Each builder bags a work with bagit-python (Tibetan and accented file names in its payload) and zips it into
``<tmp>/<rid>/<rid>.bag.zip`` holding ``<rid>.bag/…``:

- ``info_zip_bag``: ``zip -r`` on Linux: names are the filesystem's UTF-8 bytes without the UTF-8 flag (bit 11),
  "made by" Unix; extra fields for times and uid/gid.
- ``seven_zip_bag``: ``7z a -tzip`` (normal deflate, or ``method`` such as ``Deflate64``), names flagged UTF-8.
- ``macos_zip_bag``: what Finder's "Compress" (ditto) writes, without a Mac: NFD names as raw UTF-8 without the
  flag, "made by" Unix, every member with a data descriptor (sizes after the data), ``__MACOSX/…/._name``
  AppleDouble entries and a ``.DS_Store`` beside the bag.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import unicodedata
import zipfile
from pathlib import Path

from harness.bags import make_bagit_bag, write_work_tree

#: payload file names (under ``sources/``) no ASCII-only tool would keep
NAMES = ("བོད་ཡིག.tif", "dpe cha ཀ་ཁ.txt", "café.txt", "漢字.txt")
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)
DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(2048)


def bag_folder(tmp: Path, rid: str, *, files: int = 3, file_size: int = 20_000) -> Path:
    """``<tmp>/<rid>/src/<rid>.bag``: a bagit-python bag (sha256) whose payload holds ``NAMES`` in ``sources/``."""
    src = tmp / rid / "src"
    work = write_work_tree(src, rid, files_per_work=files, file_size=file_size, extra_names=NAMES)
    for name in NAMES[1:]:
        # text a person would zip: compressible, unlike the random image bytes
        (work / "sources" / name).write_text(f"{name} " * 2000, encoding="utf-8")
    make_bagit_bag(work)
    return work.rename(src / f"{rid}.bag")


def _zip_path(tmp: Path, rid: str) -> Path:
    zip_path = tmp / rid / f"{rid}.bag.zip"
    zip_path.unlink(missing_ok=True)
    return zip_path


def info_zip_bag(tmp: Path, rid: str, *options: str) -> Path:
    """The bag zipped by Info-ZIP ``zip -r`` (``options``: e.g. ``-P secret`` to encrypt)."""
    assert shutil.which("zip"), "Info-ZIP zip is one of the Makefile's DEB_PACKAGES"
    folder = bag_folder(tmp, rid)
    zip_path = _zip_path(tmp, rid)
    subprocess.run(["zip", "-q", "-r", *options, str(zip_path), folder.name], cwd=folder.parent, check=True)
    return zip_path


def seven_zip_bag(tmp: Path, rid: str, method: str = "Deflate", *options: str) -> Path:
    """The bag zipped by 7-Zip (``7z a -tzip -mm=<method>``; ``options``: e.g. ``-psecret``)."""
    assert shutil.which("7z"), "7-Zip (p7zip-full) is one of the Makefile's DEB_PACKAGES"
    folder = bag_folder(tmp, rid)
    zip_path = _zip_path(tmp, rid)
    subprocess.run(["7z", "a", "-bd", "-tzip", f"-mm={method}", *options, str(zip_path), folder.name],
                   cwd=folder.parent, check=True, capture_output=True)
    return zip_path


class _RawUtf8Info(zipfile.ZipInfo):
    """A ZipInfo written as ditto writes names: raw UTF-8, bit 11 left clear (zipfile would set it)."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # zipfile's own hook, named as zipfile names it
        return self.filename.encode("utf-8"), self.flag_bits


class _Unseekable(io.RawIOBase):
    """Where zipfile must write data descriptors, as ditto does when it streams a zip."""

    def __init__(self, sink: io.BytesIO) -> None:
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        return self.sink.write(bytes(b))

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("unseekable")


def macos_zip_bag(tmp: Path, rid: str) -> Path:
    """The bag as Finder's Compress writes it (see the module docstring)."""
    folder = bag_folder(tmp, rid)
    sink = io.BytesIO()
    with zipfile.ZipFile(_Unseekable(sink), "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in [folder, *sorted(folder.rglob("*"))]:
            arcname = unicodedata.normalize("NFD", path.relative_to(folder.parent).as_posix())
            if path.is_dir():
                _write(zf, arcname + "/", b"", 0o40755)
                continue
            _write(zf, arcname, path.read_bytes(), 0o100644)
            parent, _, name = arcname.rpartition("/")
            _write(zf, f"__MACOSX/{parent}/._{name}", APPLE_DOUBLE, 0o100644)
        _write(zf, ".DS_Store", DS_STORE, 0o100644)
    zip_path = _zip_path(tmp, rid)
    zip_path.write_bytes(sink.getvalue())
    return zip_path


def _write(zf: zipfile.ZipFile, arcname: str, content: bytes, mode: int) -> None:
    info = _RawUtf8Info(arcname, date_time=(2024, 3, 1, 12, 0, 0))
    info.create_system = 3
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_STORED if arcname.endswith("/") else zipfile.ZIP_DEFLATED
    zf.writestr(info, content)
