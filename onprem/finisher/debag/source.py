"""Where the de-bag reads members from: a finished zip on disk, or one still arriving (overlapped fetch+de-bag).

A source says when a member's bytes are readable (``wait_for``) and gets the last word before anything is
moved into the final layout (``settle``). A source that cannot deliver raises ``SourceUnavailable``: the
de-bag then stops without keeping evidence or removing its temp dir, so a later run resumes from it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from onprem.finisher.debag.model import SafeMember


class MemberSource(Protocol):
    """The file members are read from (``path``, opened with zipfile) and when they may be read."""

    @property
    def path(self) -> Path: ...

    def wait_for(self, member: SafeMember, cancelled: threading.Event) -> None:
        """Return once ``member``'s bytes are readable; raise ExtractionCancelled when ``cancelled`` is set."""
        ...

    def settle(self) -> None:
        """Called once every member verified, before the works move into place; may raise."""
        ...


@dataclass(frozen=True)
class CompleteZip:
    """Every member readable at once: a zip fully on disk, or members already written from a stream."""

    path: Path

    def wait_for(self, member: SafeMember, cancelled: threading.Event) -> None:
        return None

    def settle(self) -> None:
        return None
