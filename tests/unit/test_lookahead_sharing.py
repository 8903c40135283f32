"""The look-ahead of a host sharing its queues with other hosts (a server ledger): nothing held ahead of its free
slots, the front of the backlog it cannot start put back at once, the backlog scanned at most once per interval.

Each of these failed before (issue 20): the host held a spare per two slots, hid the rest of the front for a second,
and received the whole visible backlog on every free slot, so a host idle in its long poll missed it (2/5/5 on 12
equal works with 3 hosts; tests/hosts/test_lookahead_fairness.py shows the split on namespace hosts).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from contract import Continuation, RestoredWork, parse_message
from onprem.finisher.errors import LedgerUnavailable
from onprem.finisher.queue.lookahead import SHARED_SCAN_INTERVAL_S, Lookahead
from onprem.finisher.queue.sqs import ReceivedMessage

NOW = datetime(2026, 11, 29, tzinfo=UTC)


class RecordingQueue:
    """Records the visibility changes the look-ahead asks of SQS."""

    def __init__(self) -> None:
        self.visibility: list[tuple[str, int]] = []

    def set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        self.visibility.append((message.message_id, seconds))

    def release(self, message: ReceivedMessage) -> bool:
        self.visibility.append((message.message_id, 0))
        return True


def message(number: int, receive_count: int = 1) -> ReceivedMessage:
    rid = f"W1NLM{number}"
    body = RestoredWork.build(collection="NLM", bucket="b-staging", key=f"Archive0/00/{rid}/{rid}.bag.zip",
                              region="us-east-1", size=1, etag="e", event_time=NOW, source_event_id="x",
                              restore_expiry=NOW + timedelta(days=1, minutes=number)).to_body()
    return ReceivedMessage("us-east-1", f"m{number}", f"h{number}", body, receive_count, None, None,
                           received_monotonic=0.0)


def shared_lookahead(clock: list[float]) -> Lookahead:
    """A host of 2 slots on a server ledger, the default look-ahead of 8, every message at the backlog's front."""
    return Lookahead(8, visibility_s=900, fraction=1 / 3, max_visibility_s=43200, handoff_margin_s=1800,
                     max_receive_count=5, clock=lambda: clock[0], hide_for=lambda messages: [0] * len(messages),
                     slots=2)


def asked(ahead: Lookahead, free: int) -> int:
    """What the worker's receive asks for with ``free`` slots (a scan of 500), the scan reported as the worker does."""
    ask = ahead.wanted(free, scan=500)
    if ask.scans:
        ahead.scanned()
    return ask.count


def test_asking_what_to_receive_changes_nothing_until_the_scan_is_reported() -> None:
    clock = [100.0]
    ahead = shared_lookahead(clock)
    assert ahead.wanted(2, scan=500) == ahead.wanted(2, scan=500) == (502, True)  # before: the first call marked it
    ahead.scanned()
    assert ahead.wanted(2, scan=500) == (2, False)


def test_a_host_on_a_server_ledger_holds_nothing_ahead_and_puts_the_front_back_at_once() -> None:
    queue, clock = RecordingQueue(), [0.0]
    ahead = shared_lookahead(clock)
    taken = ahead.choose([(queue, message(n)) for n in range(6)], free=1)  # type: ignore[misc]

    assert [item.message.message_id for item in taken] == ["m0"]  # the earliest expiry
    assert len(ahead) == 0 and ahead.hidden == 0
    # visible again now (0 s), for the next host with a free slot: not hidden for a second
    assert queue.visibility == [(f"m{n}", 0) for n in range(1, 6)]


def test_a_host_on_a_server_ledger_scans_the_backlog_once_per_interval_and_asks_for_its_free_slots() -> None:
    clock = [100.0]
    ahead = shared_lookahead(clock)
    assert asked(ahead, 2) == 502  # the first receive registers the backlog
    clock[0] += SHARED_SCAN_INTERVAL_S / 2
    assert asked(ahead, 1) == 1  # then only what its free slots start
    assert asked(ahead, 0) == 0
    clock[0] += SHARED_SCAN_INTERVAL_S
    assert asked(ahead, 1) == 501


def test_a_single_host_keeps_its_whole_lookahead_and_receives_only_for_what_the_held_ones_do_not_fill() -> None:
    queue, clock = RecordingQueue(), [0.0]
    ahead = Lookahead(3, visibility_s=900, fraction=1 / 3, max_visibility_s=43200, handoff_margin_s=1800,
                      max_receive_count=5, clock=lambda: clock[0], hide_for=lambda messages: [0] * len(messages))
    ahead.choose([(queue, message(n)) for n in range(4)], free=1)  # type: ignore[misc]

    assert len(ahead) == 3 and asked(ahead, 2) == 0  # the held ones fill both slots: no receive
    assert asked(ahead, 4) == 1 + 500  # every pass with a free slot scans (one host: no one to starve)


def test_the_ledger_out_of_reach_while_placing_a_receive_neither_ends_the_run_nor_hides_the_front() -> None:
    """PostgreSQL restarted during the index's registration (a commit whose outcome is unknown): before, the error
    left the worker's loop and the finisher exited 3 mid-drain (tests/hosts, the restart test)."""
    queue, clock = RecordingQueue(), [0.0]

    def unreachable(messages: list[ReceivedMessage]) -> list[int]:
        raise LedgerUnavailable("postgresql://h/ledger", "connection lost at commit, outcome unknown")

    ahead = Lookahead(8, visibility_s=900, fraction=1 / 3, max_visibility_s=43200, handoff_margin_s=1800,
                      max_receive_count=5, clock=lambda: clock[0], hide_for=unreachable, slots=2)
    taken = ahead.choose([(queue, message(n)) for n in (3, 1, 2)], free=1)  # type: ignore[misc]

    assert [item.message.message_id for item in taken] == ["m1"]
    assert queue.visibility == [("m2", 0), ("m3", 0)]  # put back for the other hosts, not hidden


def test_a_receive_bringing_a_message_never_received_before_makes_the_next_receive_scan() -> None:
    """A backlog that arrived after the scan (the finisher started on an empty queue, or its long poll returned the
    first messages of a backlog still arriving) is registered at the next receive, not up to 30 s later: before,
    the backlog was started in the queue's order (tests/integration/test_backlog_order.py)."""
    queue, clock = RecordingQueue(), [100.0]
    ahead = shared_lookahead(clock)
    assert asked(ahead, 2) == 502  # the start's scan: the queue is empty
    ahead.choose([], free=2)
    clock[0] += 1
    assert asked(ahead, 2) == 2
    ahead.choose([(queue, message(7))], free=2)  # type: ignore[list-item]  # first received: no host registered it
    assert asked(ahead, 1) == 501
    ahead.choose([(queue, message(n, receive_count=2)) for n in (3, 4)], free=1)  # type: ignore[misc]
    assert asked(ahead, 1) == 1  # messages received before: the interval paces the scans again
    ahead.choose([(queue, waiting(message(5)))], free=1)  # type: ignore[list-item]
    assert asked(ahead, 1) == 1  # a work waiting for its restore, handed on as a new message: registered


def waiting(received: ReceivedMessage) -> ReceivedMessage:
    """``received`` as the new message the finisher hands a work waiting for its restore on as."""
    work = parse_message(received.body)
    body = work.model_copy(update={"continuation": Continuation(hop=0, phase="received", handed_on_at=NOW,
                                                                 waits=1, waiting_since=NOW)}).to_body()
    return dataclasses.replace(received, body=body)
