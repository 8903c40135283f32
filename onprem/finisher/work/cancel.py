"""Cooperative cancellation: the worker sets a work's ``CancelToken`` (heartbeat, shutdown, hand-on), a stage's
progress reporter checks it between units of work and raises ``WorkInterrupted``.

``WorkInterrupted`` is a ``ControlFlow`` signal, not a FinisherError, so no stage mistakes it for a failure: partial
downloads and de-bag journals stay resumable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from onprem.finisher.errors import InterruptReason, WorkInterrupted
from onprem.finisher.progress import Progress
from onprem.finisher.work import faults

__all__ = ["CancelToken", "CheckingProgress", "InterruptReason", "TokenRegistry", "WorkInterrupted"]


class CancelToken:
    """Set once by the worker (heartbeat, shutdown); checked by stages between units of work."""

    def __init__(self, work_rid: str) -> None:
        self.work_rid = work_rid
        self._event = threading.Event()
        self._reason: InterruptReason | None = None
        self._lock = threading.Lock()

    def cancel(self, reason: InterruptReason) -> None:
        """The first reason wins (a shutdown after a lost lease is still a lost lease)."""
        with self._lock:
            if self._reason is None:
                self._reason = InterruptReason(reason)
                self._event.set()

    @property
    def reason(self) -> InterruptReason | None:
        return self._reason

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise WorkInterrupted(self.work_rid, self._reason or InterruptReason.SHUTDOWN)

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class TokenRegistry:
    """The cancel tokens of the works in flight (the worker cancels them all on shutdown)."""

    def __init__(self) -> None:
        self._tokens: set[CancelToken] = set()
        self._lock = threading.Lock()

    def add(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.add(token)

    def discard(self, token: CancelToken) -> None:
        with self._lock:
            self._tokens.discard(token)

    def cancel_all(self, reason: InterruptReason) -> int:
        with self._lock:
            tokens = list(self._tokens)
        for token in tokens:
            token.cancel(reason)
        return len(tokens)


class CheckingProgress:
    """Forwards to an inner reporter, checks the cancel token and counts bytes (for metrics)."""

    def __init__(self, inner: Progress, cancel: CancelToken, checkpoint: str | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.inner, self.cancel, self.checkpoint, self.on_bytes = inner, cancel, checkpoint, on_bytes

    def start(self, total_bytes: int, total_files: int) -> None:
        self.cancel.check()
        self.inner.start(total_bytes, total_files)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        self.cancel.check()
        if self.checkpoint and nbytes > 0:
            faults.checkpoint(self.checkpoint, work_rid=self.cancel.work_rid)
        if self.on_bytes and nbytes:
            self.on_bytes(nbytes)
        self.inner.advance(nbytes, files)

    def finish(self) -> None:
        self.inner.finish()
