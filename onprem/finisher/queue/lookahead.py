"""Messages received ahead of a free slot, kept invisible (not released) so the backlog can be ordered.

Releasing surplus messages would count a receive against SQS's ``maxReceiveCount`` every time they are looked
at, and a backlog deeper than the slots would reach the DLQ unprocessed. Held messages are instead extended
like works in flight (every ``visibility * fraction``), handed to slots earliest restore expiry first, and
released only at shutdown or before SQS's 12 h cap.

With ``hide_for`` (the backlog index, ``work/backlog.py``) only the messages ranked among the first of the whole
backlog are held; the others are hidden until shortly before their turn (no receive spent until they come back),
or, one receive from the redrive limit, handed on as a fresh copy of the same body.

With a server ledger (several hosts share the queues) a host holds nothing ahead of its free slots: the front of
the backlog it received but cannot start is put back at once (visible, for the next host with a free slot), and it
scans the backlog (receives all it sees, to register it) once per ``SHARED_SCAN_INTERVAL_S``, and on the next
receive after one brought a message never received before (a backlog that arrived since: the finisher started
before it, its scan saw an empty queue and the order was the queue's for 30 s), otherwise receiving only what its
free slots start. Holding the whole look-ahead let the first finisher to receive keep a backlog of 12
from a second one (10/2, 11/1); one spare per slot left 4/8 and 5/5/2; one per two slots with a scan on every
receive 2/5/5 (the host that freed a slot received the whole visible backlog and put it back after ranking it, by
when a host idle in its long poll had missed it); now 4/4/4 (tests/hosts). An SQLite ledger is one host's: it keeps
the whole look-ahead and scans on every receive. Below a redrive limit of 3 the whole look-ahead is held (a message
received again would go to the DLQ).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from contract import ContractError, parse_message
from onprem.finisher.errors import LedgerUnavailable, ReceiptHandleInvalid
from onprem.finisher.queue.backlog import order_for_slots
from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue

logger = logging.getLogger(__name__)


class Ask(NamedTuple):
    """How many messages a receive asks for, and whether that includes a scan of the backlog."""

    count: int
    scans: bool


@dataclass
class Held:
    queue: WorkQueue
    message: ReceivedMessage
    extended_at: float

    # what backlog ordering reads
    @property
    def body(self) -> str:
        return self.message.body

    @property
    def sent_at(self):  # type: ignore[no-untyped-def]
        return self.message.sent_at

    @property
    def receive_count(self) -> int:
        return self.message.receive_count


#: the backlog's placement of received messages: for each, 0 (hold it) or the seconds to hide it
HideFor = Callable[[list[ReceivedMessage]], list[int]]


#: with a server ledger, a host scans the backlog (receives all it can see, to register it) at most this often
SHARED_SCAN_INTERVAL_S = 30.0


class Lookahead:
    def __init__(self, capacity: int, visibility_s: int, fraction: float, max_visibility_s: int,
                 handoff_margin_s: int, max_receive_count: int, clock: Callable[[], float] = time.monotonic,
                 hide_for: HideFor | None = None, slots: int | None = None) -> None:
        # with several hosts, a message held here is one another host with a free slot cannot see; but with a
        # redrive limit under 3 a message put back and received again would reach the DLQ: then hold them all
        self.shared = slots is not None and max_receive_count >= 3
        self.capacity = 0 if self.shared else capacity
        self.visibility_s, self.max_receive_count = visibility_s, max_receive_count
        self.interval = max(visibility_s * fraction, 0.05)
        self.cap_s = max(max_visibility_s - handoff_margin_s, 1)
        self.clock, self.hide_for = clock, hide_for
        self.held: list[Held] = []
        self._scanned_at = float("-inf")
        #: a receive brought a message no host had received before (ApproximateReceiveCount 1): a backlog no scan
        #: has registered arrived since the last one, so the next receive scans whatever the interval
        self._unscanned = False
        #: messages hidden until their turn and copies handed on, since the start (the run's story)
        self.hidden = self.handed_on = 0

    def __len__(self) -> int:
        return len(self.held)

    def room(self) -> int:
        return max(self.capacity - len(self.held), 0)

    def wanted(self, free: int, scan: int = 0) -> Ask:
        """What to receive for ``free`` slots (no side effect): those the held ones do not fill, plus the room, plus
        ``scan`` (the backlog's registration; with a server ledger once per ``SHARED_SCAN_INTERVAL_S``, and at once
        after a receive brought a message never received before); 0 when the held ones fill the free slots (no
        receive). A receive made for an ask that ``scans`` is reported with ``scanned``."""
        needed = max(free - len(self.held), 0) + self.room() if free > 0 else 0
        if not needed:
            return Ask(0, scans=False)
        due = not self.shared or self._unscanned or self.clock() - self._scanned_at >= SHARED_SCAN_INTERVAL_S
        return Ask(needed + scan, scans=True) if scan and due else Ask(needed, scans=False)

    def scanned(self) -> None:
        """A receive has scanned the backlog: the next scan is due an interval from now (or after a first sight)."""
        self._scanned_at, self._unscanned = self.clock(), False

    def choose(self, received: list[tuple[WorkQueue, ReceivedMessage]], free: int) -> list[Held]:
        """Add ``received`` to the held messages; return the ``free`` to process now, in backlog order."""
        now = self.clock()
        # a first receive: the backlog it came with may be unregistered (a scan at the start saw an empty queue,
        # or a long poll returned the first of a backlog still arriving); rescanning once more costs a receive
        self._unscanned |= self.shared and any(_first_sight(message) for _, message in received)
        fresh = [Held(queue, message, now) for queue, message in received]
        if self.hide_for is not None and fresh:
            hides = self._placements([item.message for item in fresh])
            for item, seconds in zip(fresh, hides, strict=True):
                if seconds > 0:
                    self._hide(item, seconds)
            fresh = [item for item, seconds in zip(fresh, hides, strict=True) if seconds <= 0]
        ordered = order_for_slots(self.held + fresh, self.max_receive_count)
        taken, kept = ordered[:max(free, 0)], ordered[max(free, 0):]
        self.held = kept[:self.capacity]
        extras = kept[self.capacity:]
        if self.hide_for is None:
            for extra in extras:
                extra.queue.release(extra.message)
        elif extras:
            # past the backlog's front: hidden by their rank; at its front (0) but over what this host may hold:
            # visible again at once, for the next host with a free slot (a second's hide let one host's next
            # receive take them all while another idled: 2/5/5 on 12 works)
            for extra, seconds in zip(extras, self._placements([e.message for e in extras]), strict=True):
                self._hide(extra, max(seconds, 0))
        if logger.isEnabledFor(logging.DEBUG) and (received or taken):
            logger.debug("look-ahead: %d received, %d free: taken %s, held %s, put back %s", len(received), free,
                         _rids(taken), _rids(self.held), _rids(extras))
        return taken

    def _placements(self, messages: list[ReceivedMessage]) -> list[int]:
        """The backlog index's placement of ``messages``; with the ledger out of reach (a server restarting), 0 for
        each: ordered among themselves, nothing hidden, the run goes on (the works' own ledger calls wait for it)."""
        assert self.hide_for is not None
        try:
            return self.hide_for(messages)
        except LedgerUnavailable as err:
            logger.warning("backlog index unavailable, %d message(s) placed by this receive alone: %s",
                           len(messages), err)
            return [0] * len(messages)

    def _hide(self, item: Held, seconds: int) -> None:
        """Hidden for ``seconds`` (0: visible now); one receive from the redrive limit, handed on instead (the same
        body sent first, then the old message deleted: a crash between leaves a duplicate the ledger dedups)."""
        try:
            if item.message.receive_count >= self.max_receive_count - 1:
                item.queue.send(item.message.body, item.message.message_attributes, delay_s=seconds)
                item.queue.delete(item.message)
                self.handed_on += 1
                return
            item.queue.set_visibility(item.message, min(seconds, self.cap_s))
            self.hidden += seconds > 0
        except ReceiptHandleInvalid:
            logger.debug("message %s: no longer ours, not hidden", item.message.message_id)
        except (BotoCoreError, ClientError) as err:  # it reappears after the receive's visibility: no loss
            logger.warning("message %s: could not hide it: %s", item.message.message_id, err)

    def keep_invisible(self) -> None:
        """Extend what is due; drop what is no longer ours; release what nears the 12 h cap."""
        now = self.clock()
        for item in list(self.held):
            if now - item.message.received_monotonic >= self.cap_s:
                self.held.remove(item)
                item.queue.release(item.message)
                continue
            if now - item.extended_at < self.interval:
                continue
            try:
                item.queue.set_visibility(item.message, self.visibility_s)
                item.extended_at = now
            except ReceiptHandleInvalid:
                self.held.remove(item)
            except (BotoCoreError, ClientError) as err:
                logger.warning("message %s: extension failed: %s", item.message.message_id, err)

    def release_all(self) -> None:
        for item in self.held:
            item.queue.release(item.message)
        self.held = []


def _first_sight(message: ReceivedMessage) -> bool:
    """Received for the first time and not a continuation (a work this fleet registered, handed on as a new message
    while it waits for its restore or nears the 12 h cap: it would rescan once per wait)."""
    if message.receive_count > 1:
        return False
    try:
        return parse_message(message.body).continuation is None
    except ContractError:
        return False  # an invalid body is failed, not ranked


def _rids(items: list[Held]) -> list[str]:
    """The works of ``items`` (the debug line's), the message id of a body that is not one."""
    rids = []
    for item in items:
        try:
            rids.append(parse_message(item.body).work_rid)
        except ContractError:
            rids.append(item.message.message_id)
    return rids
