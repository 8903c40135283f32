"""Order of work within a region: the restored copy that disappears first is processed first (pure functions)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
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
