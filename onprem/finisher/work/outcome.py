"""How one message ended (``WorkRunner.process``): counted per run in ``RunSummary.outcomes`` by its value."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SYNCED = "synced"  #: in the archive; the message deleted
    DUPLICATE = "duplicate"  #: this object version was synced (or superseded) before; the message deleted
    SUPERSEDED = "superseded"  #: the message names an older version of its object; deleted, not synced
    RETRY = "retry"  #: a retryable failure; the message back after a backoff
    HOOK_RETRY = "hook_retry"  #: synced, its post-sync hook failed; the message back after the hook's backoff
    FAILED = "failed"  #: a permanent failure; the message in the DLQ with its cause
    REJECTED = "rejected"  #: not a RestoredWork message; in the DLQ as ``contract``
    BUSY = "busy"  #: another finisher holds the work's lease; the message back after ``lease_busy_delay``
    RELEASED = "released"  #: interrupted by a shutdown; the message visible again
    HANDED_ON = "handed_on"  #: near the 12 h visibility cap; sent again as a continuation
    WAITING = "waiting"  #: the restore is not ready: sent again as a delayed continuation (work/waiting.py)
    LEASE_LOST = "lease_lost"  #: the message or the lease is no longer ours; left alone
    LEDGER_UNAVAILABLE = "ledger_unavailable"  #: the ledger could not be used; the message comes back
    ERROR = "error"  #: an exception escaped the runner (a bug); the message comes back
