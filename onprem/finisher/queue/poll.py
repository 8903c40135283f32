"""Every queue polled at once, one long poll per queue at a time: an empty queue's 20 s wait never delays another
queue's messages (before: queue after queue, each empty one adding up to ``WaitTimeSeconds`` to every loop).

A poll runs on its own thread and may outlive one ``collect``: the next ``collect`` takes its result, and starts
a new poll only on a queue with none in flight. A poll that ends after the stop releases what it received; so
does ``close`` for results nobody collected.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue

logger = logging.getLogger(__name__)

#: SQS returns at most 10 messages per receive
RECEIVE_BATCH = 10
#: after a refused receive, the queue's poll pauses this long at most before it is tried again
ERROR_PAUSE_S = 5.0


@dataclass(frozen=True)
class PollRequest:
    """What one poll asks: up to ``wanted`` messages (full batches: more is waiting), waiting ``wait_s``."""

    wanted: int
    wait_s: int
    visibility_s: int


@dataclass
class PollResult:
    queue: WorkQueue
    messages: list[ReceivedMessage] = field(default_factory=list)
    #: why the queue could not be read (the receive's error); None after a good receive
    error: str | None = None


class QueuePoller:
    """One poll in flight per queue; ``collect`` returns those that ended."""

    def __init__(self, queues: list[WorkQueue], stop: threading.Event) -> None:
        self.queues, self._stop = queues, stop
        self._pool = ThreadPoolExecutor(max_workers=max(len(queues), 1), thread_name_prefix="poll")
        self._polls: dict[int, Future[PollResult]] = {}

    def collect(self, request: PollRequest, timeout_s: float) -> list[PollResult]:
        """Start a poll on each queue without one, then the results of the polls that end within ``timeout_s``
        (returns at the first one; nothing when none ended)."""
        for index, queue in enumerate(self.queues):
            if index not in self._polls and request.wanted > 0 and not self._stop.is_set():
                self._polls[index] = self._pool.submit(self._poll, queue, request)
        if self._polls:
            wait(list(self._polls.values()), timeout=timeout_s, return_when=FIRST_COMPLETED)
        ended = [index for index, poll in self._polls.items() if poll.done()]
        return [self._polls.pop(index).result() for index in ended]

    def _poll(self, queue: WorkQueue, request: PollRequest) -> PollResult:
        result, wait_s = PollResult(queue), request.wait_s
        while len(result.messages) < request.wanted:
            asked = min(RECEIVE_BATCH, request.wanted - len(result.messages))
            try:
                batch = queue.receive(asked, wait_s, request.visibility_s)
            except (BotoCoreError, ClientError) as err:
                logger.warning("%s: receive failed: %s", queue.queue_name, err)
                result.error = f"receive failed: {err}"
                self._stop.wait(min(ERROR_PAUSE_S, max(request.wait_s, 1)))  # this queue only: the others go on
                break
            result.messages += batch
            logger.debug("%s: receive of %d (wait %d s): %d", queue.queue_name, asked, wait_s, len(batch))
            if len(batch) < asked or self._stop.is_set():
                break
            wait_s = 0  # a full batch: more is waiting, take it at once (the backlog's scan)
        if self._stop.is_set():
            release(result)
        return result

    def close(self, timeout_s: float) -> None:
        """After the stop: wait up to ``timeout_s`` for the polls in flight, release what none collected."""
        if self._polls:
            wait(list(self._polls.values()), timeout=timeout_s)
        for poll in self._polls.values():
            if poll.done():
                release(poll.result())
        self._polls.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


def release(result: PollResult) -> None:
    """Make the result's messages visible again now (a stop: nobody will work them)."""
    for message in result.messages:
        result.queue.release(message)
    result.messages = []
