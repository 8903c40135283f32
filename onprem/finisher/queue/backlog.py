"""Order of work within a region: the restored copy that disappears first is processed first (pure functions).

Beyond the messages held in the look-ahead, the order of the whole backlog comes from the ledger's index of queued
works (every message seen is registered with its restore expiry): a message whose rank is past what the host may
hold is hidden until shortly before its estimated turn (``hide_seconds``), and a copy the backlog will not reach
before it expires is renewed (``renewal_days``). The bound is in docs/operations.md, "Backlog order".
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from math import ceil
from typing import TypeVar

from contract import ContractError, parse_message

T = TypeVar("T")
_NEVER = datetime.max.replace(tzinfo=UTC)
_FIRST = datetime.min.replace(tzinfo=UTC)


def restore_expiry_of(body: str) -> datetime | None:
    """The message's restore expiry; ``_FIRST`` for an invalid body (it fails fast), None when unknown."""
    try:
        return parse_message(body).restore_expiry
    except ContractError:
        return _FIRST


def order_by_restore_expiry(items: Sequence[T], body_of: Callable[[T], str],
                            sent_at: Callable[[T], datetime | None] = lambda _: None) -> list[T]:
    """``items`` earliest restore expiry first; unknown expiries last; ties by send time (stable)."""

    def sort_key(item: T) -> tuple[datetime, datetime]:
        return restore_expiry_of(body_of(item)) or _NEVER, sent_at(item) or _NEVER

    return sorted(items, key=sort_key)


def split_for_slots(ordered: Sequence[T], free_slots: int) -> tuple[list[T], list[T]]:
    """``(taken, released)``: the first ``free_slots`` items are processed, the rest go back to the queue."""
    taken = max(0, free_slots)
    return list(ordered[:taken]), list(ordered[taken:])


def order_for_slots(messages: Sequence[T], max_receive_count: int) -> list[T]:
    """Messages one receive away from the redrive limit first (releasing them again would send them to the DLQ
    unprocessed), then earliest restore expiry. ``messages`` need ``body``, ``sent_at`` and ``receive_count``."""
    at_risk = [m for m in messages if getattr(m, "receive_count", 1) >= max_receive_count - 1]
    others = [m for m in messages if m not in at_risk]
    body_of, sent_of = (lambda m: m.body), (lambda m: m.sent_at)  # type: ignore[attr-defined]
    return order_by_restore_expiry(at_risk, body_of, sent_of) + order_by_restore_expiry(others, body_of, sent_of)


#: a hidden message comes back when this share of the time until its estimated turn has passed: early enough to
#: be held before its turn, late enough that a deep backlog is not received again and again
RETURN_EARLY = 0.8
#: the shortest hide (SQS visibility is whole seconds)
MIN_HIDE_S = 1


def rank_among(expiry: datetime | None, queued_expiries: Sequence[datetime]) -> int:
    """How many queued works (``queued_expiries``, sorted) expire strictly before ``expiry``: the works ahead."""
    if expiry is None:
        return len(queued_expiries)
    return bisect_left(queued_expiries, expiry)


def hide_seconds(rank: int, hold: int, rate_per_s: float, cap_s: int) -> int:
    """0 when a work ranked ``rank`` is among the ``hold`` this host may keep; else how long it stays hidden so
    it comes back before its turn (``RETURN_EARLY`` of the works ahead processed at ``rate_per_s``), within
    ``[MIN_HIDE_S, cap_s]``."""
    if rank < hold:
        return 0
    return int(min(max(RETURN_EARLY * rank / max(rate_per_s, 1e-9), MIN_HIDE_S), max(cap_s, MIN_HIDE_S)))


def renewal_days(queued: Sequence[tuple[T, datetime]], now: datetime, rate_per_s: float, margin: timedelta,
                 max_days: int) -> list[tuple[T, int]]:
    """The works of ``queued`` (earliest expiry first) whose copy expires before the backlog ahead reaches them
    plus ``margin``, each with the days to restore it for from ``now`` (S3 counts them from the request), at
    most ``max_days``. The ``i``-th work's turn is estimated at ``now + (i + 1) / rate_per_s``."""
    due = []
    for position, (item, expiry) in enumerate(queued):
        needed_until = now + timedelta(seconds=(position + 1) / max(rate_per_s, 1e-9)) + margin
        if expiry < needed_until:
            days = ceil((needed_until - now) / timedelta(days=1))
            due.append((item, max(1, min(days, max_days))))
    return due
