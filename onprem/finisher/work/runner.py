"""One message, start to finish: parse, dedup, lease, restore check, fetch → de-bag → sync, then delete.

Nothing is deleted before the work is synced or proven a duplicate of a synced one. Failures are classified
by class: RetryableError → the message comes back after a backoff; PermanentError → the cause is recorded and
the message goes to the DLQ at once. An exception nothing named is ``unexpected`` (retryable) until it has
happened ``unexpected_attempts`` times; that, and any retryable failure on the message's last receive before
SQS's maxReceiveCount, goes to the DLQ from here with its cause, so SQS never moves a message without one. After a
failure that ends the work, its de-bag temp dir is kept as evidence (``Stages.keep_evidence``). Interruptions
release the message (shutdown), hand it on as a continuation (12 h cap) or leave it alone (lease lost). A restore
in progress or re-requested is no failure: the work waits as a delayed continuation (``work/waiting.py``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import Continuation, ContractError, RestoredWork, message_attributes, parse_message
from onprem.finisher.errors import (
    Cause,
    Cleanup,
    ForeignBucket,
    InterruptReason,
    PermanentError,
    ReceiptHandleInvalid,
    RestoreExpired,
    RestoreInProgress,
    RetriesExhausted,
    RetryableError,
    TooManyHops,
    UnexpectedError,
    WorkInterrupted,
    WorkSuperseded,
)
from onprem.finisher.fetch.restore import inspect as inspect_object
from onprem.finisher.fetch.s3 import require_restored
from onprem.finisher.ledger.store import Event, Ledger, Phase, WorkRecord
from onprem.finisher.logs import current_work_rid
from onprem.finisher.metrics import Metrics
from onprem.finisher.progress import Progress
from onprem.finisher.queue.sqs import ReceivedMessage, WorkQueue
from onprem.finisher.work import faults
from onprem.finisher.work.cancel import CancelToken, TokenRegistry
from onprem.finisher.work.expiry import ExpiryGauge
from onprem.finisher.work.failures import named_failure
from onprem.finisher.work.heartbeat import BeatTiming, Heartbeat, HeldLease, lease_ttl
from onprem.finisher.work.history import (
    backoff_seconds,
    failures_with_cause,
    rid_guess,
    staged_works,
    synced_works,
)
from onprem.finisher.work.hook_phase import HookPhase
from onprem.finisher.work.outcome import Outcome
from onprem.finisher.work.settings import Settings
from onprem.finisher.work.stages import StageContext, StagedWork, Stages
from onprem.finisher.work.waiting import RestoreWaits, WaitPolicy

logger = logging.getLogger(__name__)


@dataclass
class WorkRunner:
    settings: Settings
    ledger: Ledger
    stages: Stages
    metrics: Metrics
    s3_client_for: Callable[[str], Any]
    progress_for: Callable[[str, str], Progress]
    owner: str
    tokens: TokenRegistry | None = None
    #: publishes "hours until the earliest unsynced restore expires" (throttled); None: not published
    expiry: ExpiryGauge | None = None
    waits: RestoreWaits = field(init=False)
    hooks: HookPhase = field(init=False)

    def __post_init__(self) -> None:
        restore = self.settings.restore
        self.waits = RestoreWaits(WaitPolicy(restore.wait_interval, restore.max_wait_hours, restore.tier, restore.days),
                                  self.ledger, self.s3_client_for)
        self.hooks = HookPhase(self.stages, self.ledger, self.metrics, self.settings.worker,
                               self.settings.environment.queues.max_receive_count)

    def process(self, queue: WorkQueue, message: ReceivedMessage) -> Outcome:
        """Handle one message; returns how it ended."""
        current_work_rid.set(None)
        if self.expiry is not None:
            self.expiry.tick()
        try:
            work = parse_message(message.body)
        except ContractError as err:
            return self._reject(queue, message, err)
        rid, key = work.work_rid, work.idempotency_key
        current_work_rid.set(rid)  # each slot runs in its own thread: the variable is per thread
        faults.checkpoint(faults.AFTER_RECEIVE, work_rid=rid)
        record = self.ledger.register(work, message.body, message_id=message.message_id)
        if not (hook_due := self.hooks.due(record)) and record.phase in (Phase.SYNCED, Phase.SUPERSEDED):
            self.ledger.note(key, Event.DUPLICATE, message_id=message.message_id)
            queue.delete(message)
            logger.info("%s: already synced (same object version): duplicate message deleted", rid,
                        extra={"work_rid": rid})
            return Outcome.DUPLICATE
        if not hook_due and (early := self.waits.not_yet(queue, message, work)) is not None:
            return early
        if not any(b.name == work.bucket for r in self.settings.environment.regions for b in r.buckets):
            return self._fail(queue, message, work, ForeignBucket(
                rid, f"s3://{work.bucket}/{work.key}: {work.bucket} is not a staging bucket of environment "
                     f"{self.settings.environment.name}: not fetched"))
        owner = f"{self.owner}/{uuid.uuid4().hex[:8]}"  # per attempt: two slots of one process never share it
        if not self.ledger.acquire_lease(key, owner, lease_ttl(self.settings.worker.visibility_timeout)):
            logger.info("%s: another finisher holds this work: message back in %d s", rid,
                        self.settings.worker.lease_busy_delay, extra={"work_rid": rid})
            self._set_visibility(queue, message, self.settings.worker.lease_busy_delay, rid)
            return Outcome.BUSY
        token = CancelToken(rid)
        if self.tokens is not None:
            self.tokens.add(token)
        knobs = self.settings.worker
        heartbeat = Heartbeat(queue, message, HeldLease(self.ledger, key, owner), token,
                              BeatTiming(knobs.visibility_timeout, knobs.heartbeat_fraction, knobs.max_visibility,
                                         knobs.handoff_margin))
        heartbeat.start()
        try:
            if not hook_due:  # a synced work back for its hook alone is never fetched or synced again
                self._run_stages(work, record, token)
            if (hook_retried := self.hooks.run(queue, message, key, token)) is not None:
                return hook_retried  # synced, its hook failed: only the hook comes back
            heartbeat.stop()
            faults.checkpoint(faults.BEFORE_DELETE, work_rid=rid)
            try:
                queue.delete(message)
            except (ClientError, BotoCoreError) as err:  # redelivered later, then deleted as a duplicate
                logger.warning("%s: synced but the message could not be deleted: %s", rid, err,
                               extra={"work_rid": rid})
            self.metrics.work_synced()
            return Outcome.SYNCED
        except WorkSuperseded as superseded:
            heartbeat.stop()
            self.ledger.advance(key, Phase.SUPERSEDED, current_version_id=superseded.current_version_id)
            queue.delete(message)
            logger.warning("%s: message names version %s but %s is current (a late event after an overwrite): "
                           "not synced, message deleted", rid, work.version_id, superseded.current_version_id,
                           extra={"work_rid": rid})
            return Outcome.SUPERSEDED
        except WorkInterrupted as interrupted:
            heartbeat.stop()
            return self._interrupted(queue, message, work, interrupted.reason)
        except RetryableError as err:
            heartbeat.stop()
            return self._retry(queue, message, work, err)
        except PermanentError as err:
            heartbeat.stop()
            return self._fail(queue, message, work, err)
        except Exception as err:  # a bug or an unforeseen error: retried a few times, then to the DLQ from here
            heartbeat.stop()
            named = named_failure(err, rid)
            if named is not None:
                return self._fail(queue, message, work, named)
            logger.exception("%s: unexpected error", rid, extra={"work_rid": rid})
            return self._retry(queue, message, work, UnexpectedError(rid, f"unexpected {type(err).__name__}: {err}"))
        finally:
            heartbeat.stop()
            self.ledger.release_lease(key, owner)
            if self.tokens is not None:
                self.tokens.discard(token)

    # --- the stages -----------------------------------------------------------------------------------
    def _run_stages(self, work: RestoredWork, record: WorkRecord, token: CancelToken) -> None:
        rid, key = work.work_rid, work.idempotency_key
        ctx = StageContext(token, lambda label: self.progress_for(label, rid))
        staged = self._resumable(record)
        if staged is None:
            if record.timestamps[Phase.DOWNLOADED] is None or record.phase == Phase.FAILED:
                started = time.monotonic()
                head, newer = inspect_object(self.s3_client_for(work.region), work)
                if newer:
                    raise WorkSuperseded(newer)
                state = require_restored(rid, f"s3://{work.bucket}/{work.key}", head.restore)
                if record.timestamps[Phase.RESTORE_COMPLETED] is None:
                    self.ledger.advance(key, Phase.RESTORE_COMPLETED, storage_class=state.storage_class,
                                        restore_expiry=state.expiry.isoformat() if state.expiry else None)
                self.metrics.phase_duration("restore_check", time.monotonic() - started)
                ctx = replace(ctx, head=head)  # the fetch pins to this HEAD: one HEAD per attempt
            token.check()
            staged = self._fetch_and_debag(work, ctx)  # the zip is never on disk
        else:
            logger.info("%s: resuming from phase debagged (%d work(s) staged)", rid, len(staged),
                        extra={"work_rid": rid})
        done = synced_works(self.ledger.get(key))
        for item in staged:
            if item.work_rid in done and not item.path.exists():
                continue
            token.check()
            started = time.monotonic()
            synced = self.stages.sync(item, ctx)
            self.metrics.phase_duration("sync", time.monotonic() - started)
            self.ledger.note(key, Event.WORK_SYNCED, work_rid=item.work_rid,
                             archive_path=str(synced.archive_path) if synced.archive_path else None, **synced.details)
        self.ledger.advance(key, Phase.SYNCED, works=[s.work_rid for s in staged])

    def _fetch_and_debag(self, work: RestoredWork, ctx: StageContext) -> list[StagedWork]:
        started = time.monotonic()
        fetched, staged = self.stages.fetch_debag(work, ctx)
        # its bytes: as they came (work/metered.py)
        self.metrics.phase_duration("download_debag", time.monotonic() - started)
        self.ledger.advance(work.idempotency_key, Phase.DOWNLOADED, **fetched.to_detail())
        self.ledger.advance(work.idempotency_key, Phase.DEBAGGED, works=[s.to_detail() for s in staged])
        return staged

    def _resumable(self, record: WorkRecord) -> list[StagedWork] | None:
        """The staged works of an earlier run when the ledger says de-bagged and they are all still there."""
        if record.phase != Phase.DEBAGGED:
            return None
        staged = staged_works(record)
        done = synced_works(record)
        if staged and all(s.path.is_dir() or s.work_rid in done for s in staged):
            return staged
        return None

    # --- outcomes -------------------------------------------------------------------------------------
    def _reject(self, queue: WorkQueue, message: ReceivedMessage, err: ContractError) -> Outcome:
        rid = rid_guess(message.body)
        self.ledger.record_rejected(message.body, rid, Cause.CONTRACT, str(err))
        queue.to_dlq(message, Cause.CONTRACT, str(err))
        self.metrics.work_failed(Cause.CONTRACT)
        logger.error("%s: message %s rejected to the DLQ: %s", rid or "-", message.message_id, err,
                     extra={"work_rid": rid or "-"})
        return Outcome.REJECTED

    def _already_synced(self, queue: WorkQueue, message: ReceivedMessage, work: RestoredWork,
                        err: Exception) -> bool:
        """An error after the work reached the archive (a throttled delete, a lost lease) changes nothing: the
        ledger keeps 'synced' and the message is deleted now or, failing that, later as a duplicate."""
        record = self.ledger.get(work.idempotency_key)
        if record is None or record.phase != Phase.SYNCED:
            return False
        logger.warning("%s: already synced; error after the sync ignored: %s", work.work_rid, err,
                       extra={"work_rid": work.work_rid})
        try:
            queue.delete(message)
        except (ClientError, BotoCoreError) as delete_err:
            logger.warning("%s: synced but the message could not be deleted: %s", work.work_rid, delete_err,
                           extra={"work_rid": work.work_rid})
        return True

    def _retry(self, queue: WorkQueue, message: ReceivedMessage, work: RestoredWork, err: RetryableError) -> Outcome:
        rid, key = work.work_rid, work.idempotency_key
        if self._already_synced(queue, message, work, err):
            return Outcome.SYNCED
        if isinstance(err, RestoreInProgress | RestoreExpired):  # waiting is not failing: no receive spent
            return self.waits.wait(queue, message, work, err, self._fail)
        last_time = self._no_more_retries(message, work, err)
        if last_time is not None:
            return self._fail(queue, message, work, RetriesExhausted(err, last_time))
        record = self.ledger.fail(key, err.cause, str(err), permanent=False)
        delay = err.retry_after if err.retry_after is not None else backoff_seconds(
            record.attempts, self.settings.worker.backoff_base, self.settings.worker.backoff_max)
        delay = min(delay, self.settings.worker.backoff_max)
        self._set_visibility(queue, message, delay, rid)
        self.metrics.work_failed(err.cause)
        logger.warning("%s (%s): attempt %d, retry in %d s", err, err.cause, record.attempts, delay,
                       extra={"work_rid": rid, "cause": err.cause})
        return Outcome.RETRY

    def _no_more_retries(self, message: ReceivedMessage, work: RestoredWork, err: RetryableError) -> str | None:
        """Why this retryable failure is the last one (None: retry it): SQS would move the message to the DLQ on
        its next receive without a reason, or an ``unexpected`` failure has repeated."""
        limit = self.settings.environment.queues.max_receive_count
        if message.receive_count >= limit:
            return (f"receive {message.receive_count} of maxReceiveCount {limit}: moved to the DLQ by the finisher, "
                    "not retried")
        if not isinstance(err, UnexpectedError):
            return None
        seen = failures_with_cause(self.ledger.get(work.idempotency_key), err.cause) + 1
        if seen >= self.settings.worker.unexpected_attempts or message.receive_count >= limit - 1:
            return (f"unexpected failure {seen} time(s), receive {message.receive_count} of maxReceiveCount {limit}: "
                    "moved to the DLQ by the finisher, not retried")
        return None

    def _fail(self, queue: WorkQueue, message: ReceivedMessage, work: RestoredWork, err: PermanentError) -> Outcome:
        if self._already_synced(queue, message, work, err):
            return Outcome.SYNCED
        self.ledger.fail(work.idempotency_key, err.cause, str(err), permanent=True)
        if err.cleanup in (Cleanup.EVIDENCE, Cleanup.DISCARD):  # PURGE: nothing of a version that is gone is kept
            self._keep_evidence(work)
        queue.to_dlq(message, err.cause, str(err))
        self.metrics.work_failed(err.cause)
        logger.error("%s (%s): moved to the DLQ", err, err.cause, extra={"work_rid": work.work_rid,
                                                                          "cause": err.cause})
        return Outcome.FAILED

    def _keep_evidence(self, work: RestoredWork) -> None:
        if self.stages.keep_evidence is None:
            return
        try:
            self.stages.keep_evidence(work.work_rid, work.idempotency_key)
        except OSError as err:  # evidence is a courtesy: the failure is recorded and the message moves regardless
            logger.warning("%s: could not keep the de-bag evidence: %s", work.work_rid, err,
                           extra={"work_rid": work.work_rid})

    def _interrupted(self, queue: WorkQueue, message: ReceivedMessage, work: RestoredWork,
                     reason: InterruptReason) -> Outcome:
        rid, key = work.work_rid, work.idempotency_key
        record = self.ledger.get(key)
        phase = record.phase if record else Phase.RECEIVED
        if reason == InterruptReason.LEASE_LOST:
            if self._already_synced(queue, message, work, RuntimeError(f"{rid}: lease lost after the sync")):
                return Outcome.SYNCED
            self.ledger.fail(key, Cause.LEASE_LOST, f"{rid}: message or lease lost in phase {phase}: stopped",
                             permanent=False)
            return Outcome.LEASE_LOST
        if reason == InterruptReason.HANDOFF:
            hop = (work.continuation.hop if work.continuation else 0) + 1
            if hop > self.settings.worker.max_hops:
                return self._fail(queue, message, work, TooManyHops(
                    rid, f"handed on {hop - 1} times without finishing (max_hops {self.settings.worker.max_hops})"))
            continuation = Continuation(hop=hop, phase=phase, previous_message_id=message.message_id,
                                        handed_on_at=datetime.now(UTC))
            following = work.model_copy(update={"continuation": continuation})
            new_id = queue.hand_on(message, following.to_body(), message_attributes(following))
            self.ledger.note(key, Event.HANDED_ON, hop=hop, phase=phase, new_message_id=new_id)
            logger.info("%s: handed on as continuation %d in phase %s", rid, hop, phase, extra={"work_rid": rid})
            return Outcome.HANDED_ON
        released = queue.release(message)
        self.ledger.note(key, Event.RELEASED, reason=reason, phase=phase, message_released=released)
        logger.info("%s: released in phase %s (%s)", rid, phase, reason, extra={"work_rid": rid})
        return Outcome.RELEASED

    def _set_visibility(self, queue: WorkQueue, message: ReceivedMessage, seconds: int, rid: str) -> None:
        try:
            queue.set_visibility(message, seconds)
        except (ReceiptHandleInvalid, ClientError, BotoCoreError) as err:
            logger.warning("%s: could not set the message's visibility: %s", rid, err, extra={"work_rid": rid})
