"""The heartbeat's two beats: the lease is renewed on time whatever the visibility extension is doing.

A queue and a lease keeper of our own (the heartbeat's two protocols), driven by the real threads and clock."""

from __future__ import annotations

import itertools
import time
from typing import Any

from botocore.exceptions import ClientError

from onprem.finisher.errors import InterruptReason, ReceiptHandleInvalid
from onprem.finisher.queue.sqs import ReceivedMessage
from onprem.finisher.work.cancel import CancelToken
from onprem.finisher.work.heartbeat import BeatTiming, Heartbeat, HeldLease

RID = "W22084"
#: a beat every 0.1 s, the lease's TTL 1 s
TIMING = BeatTiming(visibility_s=1, fraction=0.1, max_visibility_s=43200, handoff_margin_s=600)


class Queue:
    """``set_visibility`` as SQS answers it under throttling: each extension takes ``hold_s``, or fails."""

    def __init__(self, *, hold_s: float = 0.0, error: Exception | None = None) -> None:
        self.hold_s, self.error = hold_s, error
        self.calls = 0

    def set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        self.calls += 1
        time.sleep(self.hold_s)
        if self.error is not None:
            raise self.error


class Keeper:
    """The ledger's lease: renewed while ``ours``, with the moments it was."""

    def __init__(self, ours: bool = True) -> None:
        self.ours = ours
        self.renewed_at: list[float] = []

    def renew_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool:
        if self.ours:
            self.renewed_at.append(time.monotonic())
        return self.ours


def _message() -> ReceivedMessage:
    return ReceivedMessage(region="us-east-1", message_id="m-1", receipt_handle="h-1", body="{}", receive_count=1,
                           first_receive_at=None, sent_at=None)


def _beating(queue: Any, keeper: Keeper, seconds: float) -> CancelToken:
    token = CancelToken(RID)
    heartbeat = Heartbeat(queue, _message(), HeldLease(keeper, "key", "host/1"), token, TIMING)
    heartbeat.start()
    try:
        token.wait(seconds)
    finally:
        heartbeat.stop()
    return token


def test_a_stuck_extension_does_not_delay_the_lease_renewal() -> None:
    """An extension spending its retries for longer than the lease's TTL: before, the renewal waited behind it and
    the lease lapsed while the work ran (another slot took the work: the CI flake of the 503 extension trial)."""
    keeper = Keeper()
    queue = Queue(hold_s=1.8)  # botocore's 5 attempts with backoff, longer than the 1 s TTL
    token = _beating(queue, keeper, 1.5)
    assert queue.calls == 1  # the one extension still stuck
    assert not token.is_set()
    assert len(keeper.renewed_at) >= 8, keeper.renewed_at
    gaps = [b - a for a, b in itertools.pairwise(keeper.renewed_at)]
    assert max(gaps) < TIMING.visibility_s / 2, gaps


def test_failing_extensions_keep_the_work_while_the_lease_is_ours() -> None:
    throttled = ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "503"}}, "ChangeMessageVisibility")
    queue, keeper = Queue(error=throttled), Keeper()
    token = _beating(queue, keeper, 0.8)
    assert not token.is_set()
    assert queue.calls >= 4 and len(keeper.renewed_at) >= 4


def test_a_lease_taken_by_another_finisher_stops_the_work() -> None:
    token = _beating(Queue(), Keeper(ours=False), 2.0)
    assert token.reason == InterruptReason.LEASE_LOST


def test_a_refused_receipt_handle_stops_the_work() -> None:
    token = _beating(Queue(error=ReceiptHandleInvalid("queue: message m-1: ReceiptHandleIsInvalid")), Keeper(), 2.0)
    assert token.reason == InterruptReason.LEASE_LOST


def test_near_the_visibility_cap_the_work_is_handed_on() -> None:
    token = CancelToken(RID)
    timing = BeatTiming(visibility_s=1, fraction=0.1, max_visibility_s=700, handoff_margin_s=600)
    heartbeat = Heartbeat(Queue(), _message(), HeldLease(Keeper(), "key", "host/1"), token, timing,
                          clock=lambda: time.monotonic() + 200)
    heartbeat.start()
    try:
        token.wait(2.0)
    finally:
        heartbeat.stop()
    assert token.reason == InterruptReason.HANDOFF


class _Timed(Queue):
    """Each extension's moment and length."""

    def __init__(self) -> None:
        super().__init__()
        self.extended: list[tuple[float, int]] = []

    def set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        self.extended.append((time.monotonic(), seconds))


class _SlowKeeper(Keeper):
    """A renewal that takes ``hold_s`` (a database round trip), noting when the lease then ends."""

    def __init__(self, hold_s: float) -> None:
        super().__init__()
        self.hold_s = hold_s
        self.ends: list[tuple[float, float]] = []

    def renew_lease(self, idempotency_key: str, owner: str, ttl_s: float) -> bool:
        time.sleep(self.hold_s)
        now = time.monotonic()
        self.ends.append((now, now + ttl_s))
        return True


def test_a_renewed_lease_ends_before_the_message_it_guards_is_visible_again() -> None:
    """At the default beat (a third of the visibility), with renewals slower than extensions. Before, each thread
    waited a whole interval after its own call, so the renewals drifted behind the extensions; once a renewal came
    more than a tenth of the visibility after the last extension, a process killed then left a lease outliving the
    message's visibility (the next receive: "another finisher holds this work")."""
    queue, keeper = _Timed(), _SlowKeeper(hold_s=0.03)
    token = CancelToken(RID)
    heartbeat = Heartbeat(queue, _message(), HeldLease(keeper, "key", "host/1"), token,
                          BeatTiming(visibility_s=1, fraction=1 / 3, max_visibility_s=43200, handoff_margin_s=600))
    started = time.monotonic()
    heartbeat.start()
    try:
        token.wait(2.6)
    finally:
        heartbeat.stop()
    assert len(keeper.ends) >= 6, keeper.ends
    assert queue.extended and queue.extended[0][0] - started < 0.05  # the first extension at once
    for renewed_at, lease_end in keeper.ends:
        last = max((at, seconds) for at, seconds in queue.extended if at <= renewed_at)
        assert lease_end <= last[0] + last[1], (renewed_at, lease_end, last)
