"""The S3 full-object checksum of a downloaded file, when the object has one this process can compute.

Verified: SHA256, SHA1 and CRC32 of single-part uploads and ``ChecksumType=FULL_OBJECT`` (hashlib / zlib);
CRC32C and CRC64NVME only when ``awscrt`` is installed. Not verified (said so in the result): composite
checksums of multipart uploads (a checksum of part checksums, ``…-N``), and objects without a checksum.
The size is always checked, and each ranged GET is pinned to the ETag.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK_SIZE = 8 << 20
_MULTIPART_ETAG = re.compile(r"-\d+\"?$")


@dataclass(frozen=True)
class ObjectChecksum:
    algorithm: str  # "sha256", "crc32", …
    value: str  # base64, as S3 gives it


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, chunk: bytes) -> None:
        self.value = zlib.crc32(chunk, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _crt_factory(name: str) -> Callable[[], Any] | None:
    try:
        from awscrt import checksums  # type: ignore[import-not-found]
    except ImportError:
        return None

    class _Crt:
        def __init__(self) -> None:
            self.value = 0
            self.fn, self.width = {"crc32c": (checksums.crc32c, 4), "crc64nvme": (checksums.crc64nvme, 8)}[name]

        def update(self, chunk: bytes) -> None:
            self.value = self.fn(chunk, self.value)

        def digest(self) -> bytes:
            return self.value.to_bytes(self.width, "big")

    return _Crt


def _hasher_factory(algorithm: str) -> Callable[[], Any] | None:
    if algorithm in ("sha256", "sha1"):
        return lambda: hashlib.new(algorithm)
    if algorithm == "crc32":
        return _Crc32
    return _crt_factory(algorithm)


def full_object_checksum(head: dict[str, Any]) -> tuple[ObjectChecksum | None, str]:
    """The checksum of ``head`` that covers the whole object, or None with the reason it is not verifiable."""
    for field, algorithm in (("ChecksumSHA256", "sha256"), ("ChecksumSHA1", "sha1"), ("ChecksumCRC64NVME",
                             "crc64nvme"), ("ChecksumCRC32", "crc32"), ("ChecksumCRC32C", "crc32c")):
        value = head.get(field)
        if not value:
            continue
        kind = head.get("ChecksumType")
        composite = kind == "COMPOSITE" or (kind is None and (
            "-" in value or _MULTIPART_ETAG.search(head.get("ETag", "")) is not None))
        if composite:
            return None, f"{algorithm} checksum is a multipart composite (not a full-object checksum): not verified"
        if _hasher_factory(algorithm) is None:
            return None, f"{algorithm} full-object checksum present but not computable here (needs awscrt)"
        return ObjectChecksum(algorithm, value), f"{algorithm} full-object checksum"
    return None, "the object has no S3 checksum: size and ETag-pinned ranges only"


def file_checksum(path: Path, algorithm: str) -> str:
    """The base64 checksum of a file, as S3 encodes ``algorithm``'s digest."""
    factory = _hasher_factory(algorithm)
    if factory is None:
        raise ValueError(f"cannot compute {algorithm}")
    hasher = factory()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
    return base64.b64encode(hasher.digest()).decode("ascii")
