"""The whole backlog in restore-expiry order: every message seen is registered in the ledger (its index of queued
works), ranked against the fleet's queued works, held when it is among the first this host may take, hidden until
shortly before its turn otherwise; copies the backlog will not reach in time are renewed (RestoreObject, more days).

Why the ledger: SQS has no order and no peek; a message is seen only by receiving it (a receive counts towards
``maxReceiveCount``, visibility is capped at 12 h). The index makes every message's place known after one receive,
and a hide (``ChangeMessageVisibility``) costs no receive until it comes back. The bound: docs/operations.md,
"Backlog order".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import ContractError, parse_message
from onprem.finisher.errors import FinisherError
from onprem.finisher.fetch.restore import request_restore
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.queue.backlog import hide_seconds, rank_among, renewal_days
from onprem.finisher.queue.sqs import ReceivedMessage
from onprem.finisher.work.settings import Settings

logger = logging.getLogger(__name__)

#: the throughput is measured over this window of the ledger's syncs
RATE_WINDOW = timedelta(hours=1)
#: a queued row not seen for this long has lost its message (the longest hide is under 12 h)
STALE_AFTER = timedelta(hours=24)
#: RestoreObject calls per renewal pass at most (the rest wait for the next pass)
RENEWALS_PER_PASS = 100
RESTORE_RENEWED = "restore_renewed"


class BacklogIndex:
    """Ranks received messages against the ledger's queued works; renews copies the backlog will not reach."""

    def __init__(self, settings: Settings, ledger: Ledger, s3_client_for: Callable[[str], Any], hold: int,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings, self.ledger, self.s3_client_for, self.hold, self.clock = (
            settings, ledger, s3_client_for, hold, clock)
        self.cap_s = max(settings.worker.max_visibility - settings.worker.handoff_margin, 1)
        self._renewed_at: datetime | None = None

    def rate_per_s(self, now: datetime) -> float:
        """The fleet's measured syncs per second, or the configured prior before there is a measurement."""
        measured = self.ledger.synced_per_second(now, RATE_WINDOW)
        return measured if measured is not None else self.settings.worker.backlog_prior_rate / 3600

    def hide_for(self, messages: list[ReceivedMessage]) -> list[int]:
        """Register ``messages`` in the index; for each, 0 (hold it) or the seconds to hide it."""
        expiries: list[datetime | None] = []
        for message in messages:
            try:
                work = parse_message(message.body)
            except ContractError:
                expiries.append(None)  # invalid: held, so the runner fails it fast
                continue
            self.ledger.register(work, message.body, message_id=message.message_id)
            expiries.append(work.restore_expiry)
        now = self.clock()
        queued = [w.restore_expiry for w in self.ledger.queued_works(now, STALE_AFTER)]
        rate = self.rate_per_s(now)
        return [0 if expiry is None else hide_seconds(rank_among(expiry, queued), self.hold, rate, self.cap_s)
                for expiry in expiries]

    def renew_due(self) -> int:
        """Every ``renew_interval``: renew the queued copies the backlog will not reach ``renew_margin_hours``
        before they expire; returns how many were renewed. Each renewal is a ledger note with the new expiry."""
        now = self.clock()
        if self._renewed_at and (now - self._renewed_at).total_seconds() < self.settings.worker.renew_interval:
            return 0
        self._renewed_at = now
        restore = self.settings.restore
        queued = [(w, w.restore_expiry) for w in self.ledger.queued_works(now, STALE_AFTER)]
        due = renewal_days(queued, now, self.rate_per_s(now), timedelta(hours=restore.renew_margin_hours), 30)
        renewed = 0
        for work, days in due[:RENEWALS_PER_PASS]:
            if not (work.bucket and work.key and work.region):
                continue
            try:
                outcome = request_restore(self.s3_client_for(work.region), work.bucket, work.key, restore.tier, days,
                                          version_id=work.version_id, work_rid=work.work_rid)
            except (FinisherError, BotoCoreError, ClientError) as err:
                logger.warning("%s: restore renewal failed: %s", work.work_rid, err, extra={"work_rid": work.work_rid})
                continue
            # S3 counts the days from the request, the expiry at the next midnight UTC: now + days is the floor
            until = now + timedelta(days=days)
            self.ledger.note(work.idempotency_key, RESTORE_RENEWED, tier=restore.tier, days=days, outcome=outcome,
                             previous_expiry=work.restore_expiry.isoformat(), restore_expiry=until.isoformat())
            logger.warning("%s: the backlog will not reach it before its copy expires (%s): restore renewed "
                           "(%s, %d days): %s", work.work_rid, work.restore_expiry.isoformat(), restore.tier, days,
                           outcome, extra={"work_rid": work.work_rid})
            renewed += 1
        return renewed
