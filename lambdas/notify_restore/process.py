"""The per-invocation story: parse → per record: filter, route, (HEAD), enrich, send once → summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from config.routing import Route
from contract import RestoredWork
from lambdas.notify_restore.clients import AwsClients
from lambdas.notify_restore.dedupe import Deduplicator
from lambdas.notify_restore.enrich import is_accepted_key, restored_work, work_rid_of
from lambdas.notify_restore.errors import InvalidRestoreEvent, NotifyError, RestoreBatchFailed
from lambdas.notify_restore.events import RestoreCompletion, parse_event
from lambdas.notify_restore.head import head_restored_object
from lambdas.notify_restore.route import route_for, send_restored_work
from lambdas.notify_restore.settings import NotifySettings
from lambdas.notify_restore.telemetry import emit_outcome

_WORK_KEYS = ("work_rid", "bucket", "key", "collection")


@dataclass
class RecordOutcome:
    """One record's fate, as listed in the handler's summary."""

    index: int
    outcome: str
    work_rid: str | None = None
    bucket: str | None = None
    key: str | None = None
    collection: str | None = None
    queue_url: str | None = None
    message_id: str | None = None
    source_event_id: str | None = None
    error: str | None = None
    #: the refusing rule (NotifyError.cause), ``unexpected`` for any other exception
    cause: str | None = None


class RestoreNotifier:
    """Built once per cold start from the settings; ``handle`` is called once per invocation."""

    def __init__(self, settings: NotifySettings, logger: Any, clients: AwsClients | None = None) -> None:
        self.settings = settings
        self.logger = logger
        self.clients = clients or AwsClients()
        self.dedupe = Deduplicator(settings, self.clients, self._send)
        if not self.dedupe.enabled:
            logger.warning("IDEMPOTENCY_TABLE is not set: duplicates are not suppressed (local use only)")

    def handle(self, event: object, context: Any) -> dict[str, Any]:
        """Return ``{"shape", "event_id", "counts", "records": [...]}``; raise a NotifyError when a record failed
        (for a batch: after every good record was sent) so the on-failure destination receives the event."""
        self.dedupe.register_lambda_context(context)
        try:
            parsed = parse_event(event)
        except InvalidRestoreEvent as err:
            self.logger.error(f"refused event: {err}", extra={"error": type(err).__name__, "cause": err.cause})
            self._emit("invalid", error=str(err), cause=err.cause)
            raise
        outcomes: list[RecordOutcome] = []
        errors: list[Exception] = []
        for index, record in enumerate(parsed.records):
            outcome, error = self._handle_record(index, record)
            outcomes.append(outcome)
            if error is not None:
                errors.append(error)
        if parsed.event_id:
            self.logger.set_correlation_id(parsed.event_id)
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        summary = {"shape": parsed.shape, "event_id": parsed.event_id, "counts": counts,
                   "records": [asdict(o) for o in outcomes]}
        self.logger.info(f"{parsed.shape} event handled: {counts}", extra={"summary": counts})
        if errors and parsed.shape == "eventbridge":
            raise errors[0]
        if errors:
            problems = [o.error for o in outcomes if o.error]
            raise RestoreBatchFailed(summary, [p for p in problems if p]) from errors[0]
        return summary

    def _handle_record(self, index: int, record: RestoreCompletion | InvalidRestoreEvent,
                       ) -> tuple[RecordOutcome, Exception | None]:
        if isinstance(record, InvalidRestoreEvent):
            self.logger.error(f"refused record {index}: {record}", extra={"error": type(record).__name__})
            self._emit("invalid", error=str(record), cause=record.cause)
            return RecordOutcome(index, "invalid", error=str(record), cause=record.cause), record
        outcome = RecordOutcome(index, "failed", bucket=record.bucket, key=record.key,
                                source_event_id=record.source_event_id)
        self.logger.set_correlation_id(record.source_event_id)
        self.logger.append_keys(bucket=record.bucket, key=record.key)
        try:
            return self._deliver(record, outcome), None
        except NotifyError as err:
            outcome.outcome, outcome.error, outcome.cause = err.outcome, str(err), err.cause
            self.logger.error(f"{outcome.work_rid or '-'}: not sent: {err}",
                              extra={"error": type(err).__name__, "cause": err.cause})
            self._emit(err.outcome, outcome, error=str(err))
            return outcome, err
        except Exception as err:  # a batch must go on with its other records; re-raised at the end
            outcome.error = f"{outcome.work_rid or record.key}: {type(err).__name__}: {err} (cause: unexpected)"
            outcome.cause = "unexpected"
            self.logger.exception(f"{outcome.work_rid or '-'}: not sent: {outcome.error}")
            self._emit("failed", outcome, error=outcome.error)
            return outcome, err
        finally:
            self.logger.remove_keys(list(_WORK_KEYS))

    def _deliver(self, record: RestoreCompletion, outcome: RecordOutcome) -> RecordOutcome:
        if not is_accepted_key(record.key, self.settings.accepted_suffixes):
            outcome.outcome = "ignored"
            self.logger.info(f"ignored s3://{record.bucket}/{record.key}: not a work "
                             f"(accepted: {', '.join(self.settings.accepted_suffixes)})")
            self._emit("ignored", outcome)
            return outcome
        outcome.work_rid = work_rid_of(record, self.settings.accepted_suffixes)
        self.logger.append_keys(work_rid=outcome.work_rid)
        route = route_for(self.settings.routing_table, record, outcome.work_rid)
        outcome.collection = route.collection
        self.logger.append_keys(collection=route.collection)
        head = None
        if self.settings.head_object:
            head = head_restored_object(self.clients.s3(route.region), record, outcome.work_rid)
        work = restored_work(record, route, head)
        result = self.dedupe.send_once(work, route)
        outcome.queue_url, outcome.message_id = result.queue_url, result.message_id
        if result.duplicate:
            outcome.outcome = "duplicate"
            self.logger.info(f"{work.work_rid}: duplicate suppressed — already sent as message {result.message_id} "
                             f"(event {result.sent_by_event_id})", extra={"idempotency_key": work.idempotency_key})
        else:
            outcome.outcome = "routed"
            self.logger.info(f"{work.work_rid}: restored, sent to {route.queue_url} as message {result.message_id}",
                             extra={"idempotency_key": work.idempotency_key, "size": work.size})
        self._emit(outcome.outcome, outcome, region=route.region)
        return outcome

    def _send(self, work: RestoredWork, route: Route) -> str:
        return send_restored_work(self.clients.sqs(route.region), route.queue_url, work)

    def _emit(self, outcome: str, record: RecordOutcome | None = None, *, region: str | None = None,
              error: str | None = None, cause: str | None = None) -> None:
        record = record or RecordOutcome(-1, outcome)
        emit_outcome(self.settings.metrics_namespace, self.settings.service, outcome,
                     collection=record.collection, region=region, work_rid=record.work_rid, bucket=record.bucket,
                     key=record.key, source_event_id=record.source_event_id, error=error,
                     cause=cause or record.cause)
