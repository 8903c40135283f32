"""The S3 checksum of an object, combined from the checksums of the byte ranges read (the one fetch path).

From ranges: CRC32 (zlib), CRC32C and CRC64NVME (S3's default; ``awscrt``, also for the combining) — full-object
(``combine_ranges``) or the composite of a multipart upload whose parts are of one size (``combine_composite``).
Not verifiable (said so in the result and the log): SHA-1/SHA-256 (they do not combine, and the zip is never
downloaded whole), a composite whose part sizes vary, an object without a checksum, the MD5 ETag (every ranged
GET is pinned to it with ``IfMatch``). The size is always checked.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from awscrt import checksums  # type: ignore[import-not-found]

_MULTIPART_ETAG = re.compile(r"-\d+\"?$")
#: the checksums that combine from those of consecutive ranges (CRC arithmetic): ``crc(data, previous)``,
#: ``combine(crc1, crc2, length2)`` and the width in bytes
_CRCS: dict[str, tuple[Callable[[bytes, int], int], Callable[[int, int, int], int], int]] = {
    "crc32": (zlib.crc32, checksums.combine_crc32, 4),
    "crc32c": (checksums.crc32c, checksums.combine_crc32c, 4),
    "crc64nvme": (checksums.crc64nvme, checksums.combine_crc64nvme, 8),
}


@dataclass(frozen=True)
class ObjectChecksum:
    algorithm: str  # "sha256", "crc32", …
    value: str  # base64, as S3 gives it


def full_object_checksum(head: dict[str, Any]) -> tuple[ObjectChecksum | None, str]:
    """The checksum of ``head`` that covers the whole object, or None with the reason it is not verifiable."""
    for algorithm in ("sha256", "sha1", "crc64nvme", "crc32", "crc32c"):
        value = head.get(f"Checksum{algorithm.upper()}")  # ChecksumSHA256, …, ChecksumCRC32C
        if not value:
            continue
        kind = head.get("ChecksumType")
        composite = kind == "COMPOSITE" or (kind is None and (
            "-" in value or _MULTIPART_ETAG.search(head.get("ETag", "")) is not None))
        if composite:
            return None, f"{algorithm} checksum is a multipart composite (not a full-object checksum): not verified"
        return ObjectChecksum(algorithm, value), f"{algorithm} full-object checksum"
    return None, "the object has no S3 checksum: size and ETag-pinned ranges only"


def range_checksum(algorithm: str) -> Callable[[bytes, int], int] | None:
    """``crc(data, previous)`` of an algorithm whose range checksums combine (CRC32, CRC32C, CRC64NVME), or None."""
    crc = _CRCS.get(algorithm)
    return crc[0] if crc else None


def combine_ranges(algorithm: str, pieces: list[tuple[int, int, int]], size: int) -> str | None:
    """The base64 checksum of the object from ``(start, end, crc)`` of ranges covering ``[0, size)`` in order;
    None when they leave a gap or overlap (nothing can then be said)."""
    _, combine, width = _CRCS[algorithm]
    value, position = 0, 0
    for start, end, crc in pieces:
        if start != position:
            return None
        value, position = combine(value, crc, end - start), end
    if position != size:
        return None
    return base64.b64encode(value.to_bytes(width, "big")).decode("ascii")


def composite_checksum(head: dict[str, Any]) -> tuple[ObjectChecksum, int] | None:
    """The multipart composite checksum of ``head`` (a checksum of the parts' checksums) and its part count, when
    its algorithm combines from ranges; None otherwise."""
    parts = _MULTIPART_ETAG.search(head.get("ETag", ""))
    for algorithm in ("crc64nvme", "crc32", "crc32c"):
        value = head.get(f"Checksum{algorithm.upper()}")
        if not value or head.get("ChecksumType") == "FULL_OBJECT" or (parts is None and "-" not in value):
            continue
        count = value.rpartition("-")[2] if "-" in value else parts.group(0).strip('-"') if parts else ""
        if count.isdigit():
            return ObjectChecksum(algorithm, value.partition("-")[0]), int(count)
    return None


def combine_composite(algorithm: str, pieces: list[tuple[int, int, int]], part_size: int, size: int) -> str | None:
    """The base64 composite checksum (without ``-N``) from ranges cut at every ``part_size``: each part's checksum
    combined from its ranges, then the checksum of their concatenation; None when the ranges do not cover it."""
    check, _, width = _CRCS[algorithm]
    parts = []
    for start in range(0, size, part_size):
        inside = [p for p in pieces if start <= p[0] and p[1] <= min(start + part_size, size)]
        value = combine_ranges(algorithm, [(s - start, e - start, c) for s, e, c in inside],
                               min(part_size, size - start))
        if value is None:
            return None
        parts.append(base64.b64decode(value))
    return base64.b64encode(check(b"".join(parts), 0).to_bytes(width, "big")).decode("ascii")
