"""Where a work lives: its RID from an S3 key, its staging-bucket key, its archive path.

Staging buckets: ``Archive{NN//50}/{NN}/{RID}/{RID}.bag.zip``; the archive filesystem:
``Archive{NN//25}/{NN}/{RID}``. NN is the RID's last two characters when both are digits, else ``00``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from contract.errors import ContractError

#: BDRC resource ids: a letter then letters, digits, ``_`` or ``-`` (W22084, W1NLM4700, W3CN27014_ABC)
RID_PATTERN = r"[A-Za-z][A-Za-z0-9_-]*"
#: ASCII only and matched whole (``fullmatch``): ``$`` alone would also match before a trailing newline, and a
#: shell's ``$(basename …)`` strips that newline and names a sibling folder
_RID_RE = re.compile(RID_PATTERN, re.ASCII)
#: C0 and C1 control characters and DEL: never part of a RID, a key or a file name a person has to read
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: a staged work, and its archive copy, keeps its bag's tag files (bagit.txt, manifests) in ``<RID>.bag/``
STAGED_BAG_SUFFIX = ".bag"

STAGING_DIVISOR = 50
ARCHIVE_DIVISOR = 25
#: what a staging bucket holds in a work's folder: its bag, or (where plain zips are accepted) its zip
STAGING_SUFFIXES = (".bag.zip", ".zip")
STAGING_LAYOUT = "Archive{NN//50}/{NN}/{RID}/{RID}"


class InvalidWorkRid(ContractError):
    """A key or name from which no valid work RID can be derived."""


class KeyOutsideLayout(ContractError):
    """A key named like a work that is not where the staging layout puts that work (``expected``)."""

    def __init__(self, key: str, expected: str | None, rule: str, work_rid: str | None = None) -> None:
        self.key, self.expected, self.work_rid = key, expected, work_rid
        where = f"; the staging key of that work is {expected!r}" if expected else ""
        super().__init__(f"key {key!r} is outside the staging layout {STAGING_LAYOUT}{{suffix}}: {rule}{where}")


def is_rid(candidate: object) -> bool:
    """Whether ``candidate`` is a work RID, matched whole (no trailing newline, no control character)."""
    return isinstance(candidate, str) and _RID_RE.fullmatch(candidate) is not None


def validate_rid(rid: str) -> str:
    """Return ``rid`` unchanged when it is a valid work RID, else raise InvalidWorkRid."""
    if not is_rid(rid):
        raise InvalidWorkRid(f"{rid!r} is not a valid work RID (expected {RID_PATTERN})")
    return rid


def control_characters(text: str) -> list[str]:
    """The control characters in ``text`` (C0, DEL, C1), each as its escape (``'\\n'``): [] when there is none."""
    return [repr(ch)[1:-1] for ch in dict.fromkeys(_CONTROL_RE.findall(text))]


def work_rid_from_key(key: str) -> str:
    """The work RID of an object key: the file name up to its first dot.

    ``Archive0/00/W1NLM4700/W1NLM4700.bag.zip`` → ``W1NLM4700``; ``W22084.zip`` → ``W22084``.
    """
    name = PurePosixPath(key).name if key else ""
    rid = name.split(".", 1)[0]
    if not rid:
        raise InvalidWorkRid(f"cannot derive a work RID from key {key!r}")
    return validate_rid(rid)


def rid_from_staging_key(key: str, suffixes: tuple[str, ...] = STAGING_SUFFIXES) -> str:
    """The work RID of a staging-bucket key that is exactly ``staging_key_for_rid(rid, suffix)``.

    The file name is ``{RID}{suffix}`` for one of ``suffixes`` (the longest that fits, so ``W1.bag.zip`` is W1's
    bag even when ``.zip`` is accepted too) and the RID is matched whole (``is_rid``). Raises InvalidWorkRid when
    the key holds a control character or the name before the suffix is not a RID, and KeyOutsideLayout (naming
    the key and the expected key) when the name has no accepted suffix or the work sits in another folder.
    """
    controls = control_characters(key)
    if controls:
        raise InvalidWorkRid(f"key {key!r} holds control character(s) {', '.join(controls)}: never a work's key")
    name = key.rsplit("/", 1)[-1]
    suffix = next((s for s in sorted(suffixes, key=len, reverse=True) if s and name.endswith(s)), None)
    if suffix is None:
        raise KeyOutsideLayout(key, None, f"the file name does not end with {' or '.join(suffixes)}")
    rid = name[: -len(suffix)]
    if not is_rid(rid):
        raise InvalidWorkRid(f"key {key!r}: {rid!r} before {suffix!r} is not a work RID "
                             f"(expected {RID_PATTERN}, matched whole)")
    expected = staging_key_for_rid(rid, suffix)
    if key != expected:
        raise KeyOutsideLayout(key, expected, f"{rid}{suffix} is not in its work's folder", rid)
    return rid


def rid_bucket_number(rid: str) -> str:
    """NN: the RID's last two characters when both are digits, else ``"00"``."""
    validate_rid(rid)
    tail = rid[-2:]
    return tail if len(tail) == 2 and tail.isdigit() and tail.isascii() else "00"


def staging_key_for_rid(rid: str, suffix: str = ".bag.zip") -> str:
    """The key of a work's bag in a staging bucket: ``Archive{NN//50}/{NN}/{RID}/{RID}{suffix}``."""
    nn = rid_bucket_number(rid)
    return f"Archive{int(nn) // STAGING_DIVISOR}/{nn}/{rid}/{rid}{suffix}"


def archive_relpath_for_rid(rid: str) -> PurePosixPath:
    """The work's folder relative to the archive root: ``Archive{NN//25}/{NN}/{RID}``."""
    nn = rid_bucket_number(rid)
    return PurePosixPath(f"Archive{int(nn) // ARCHIVE_DIVISOR}", nn, rid)
