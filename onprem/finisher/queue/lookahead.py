"""Messages received ahead of a free slot, kept invisible (not released) so the backlog can be ordered.

Releasing surplus messages would count a receive against SQS's ``maxReceiveCount`` every time they are looked
at, and a backlog deeper than the slots would reach the DLQ unprocessed. Held messages are instead extended
like works in flight (every ``visibility * fraction``), handed to slots earliest restore expiry first, and
released only at shutdown or before SQS's 12 h cap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from onprem.finisher.errors import ReceiptHandleInvalid
from onprem.finisher.queue.backlog import order_for_slots
from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue

logger = logging.getLogger(__name__)


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


class Lookahead:
    def __init__(self, capacity: int, visibility_s: int, fraction: float, max_visibility_s: int,
                 handoff_margin_s: int, max_receive_count: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity, self.visibility_s, self.max_receive_count = capacity, visibility_s, max_receive_count
        self.interval = max(visibility_s * fraction, 0.05)
        self.cap_s = max(max_visibility_s - handoff_margin_s, 1)
        self.clock = clock
        self.held: list[Held] = []

    def __len__(self) -> int:
        return len(self.held)

    def room(self) -> int:
        return max(self.capacity - len(self.held), 0)

    def choose(self, received: list[tuple[WorkQueue, ReceivedMessage]], free: int) -> list[Held]:
        """Add ``received`` to the held messages; return the ``free`` to process now, in backlog order."""
        now = self.clock()
        candidates = self.held + [Held(queue, message, now) for queue, message in received]
        ordered = order_for_slots(candidates, self.max_receive_count)
        taken, kept = ordered[:max(free, 0)], ordered[max(free, 0):]
        self.held = kept[:self.capacity]
        for extra in kept[self.capacity:]:
            extra.queue.release(extra.message)
        return taken

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
