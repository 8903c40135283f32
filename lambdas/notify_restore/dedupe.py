"""One restore completion → one message: Powertools idempotency keyed on the object version and its restore.

The key is the business ``idempotency_key`` (bucket, key and version-id or ETag) with the restore's expiry
(``restore_identity``), never the event id: a redelivery, or a second event of the same restore, is recognised,
while the completion of a later restore of the same version (an expired copy re-requested: a new expiry) is sent.
The finisher treats a late message of a version it has synced as a duplicate. Without ``IDEMPOTENCY_TABLE`` every
event is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from config.routing import Route
from contract import RestoredWork
from lambdas.notify_restore.clients import AwsClients
from lambdas.notify_restore.settings import NotifySettings

#: stable across function renames and versions (the table belongs to one regional function)
KEY_PREFIX = "notify_restore.send_restored_work"


@dataclass(frozen=True)
class SendResult:
    """What happened to one work: sent now, or already sent by an earlier delivery."""

    message_id: str
    queue_url: str
    duplicate: bool
    #: the delivery that actually sent the message (differs from the current one for a duplicate)
    sent_by_event_id: str


Send = Callable[[RestoredWork, Route], str]
SendOnce = Callable[[RestoredWork, Route], SendResult]


class Deduplicator:
    """Wraps ``send`` so a work already sent within ``IDEMPOTENCY_DAYS`` is not sent again."""

    def __init__(self, settings: NotifySettings, clients: AwsClients, send: Send) -> None:
        self._send = send
        self._config: Any = None
        self.enabled = settings.idempotency_table is not None
        self.send_once: SendOnce = self._send_always
        if self.enabled:
            self.send_once = self._build(settings, clients)

    def register_lambda_context(self, context: Any) -> None:
        """Lets an in-progress record expire with the invocation's remaining time (Powertools' timeout guard)."""
        if self._config is not None and hasattr(context, "get_remaining_time_in_millis"):
            self._config.register_lambda_context(context)

    def _send_always(self, work: RestoredWork, route: Route) -> SendResult:
        return SendResult(self._send(work, route), route.queue_url, False, work.source_event_id)

    def _build(self, settings: NotifySettings, clients: AwsClients) -> SendOnce:
        # imported only when deduplication is on: the idempotency utility is the heaviest import of the function
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        self._config = IdempotencyConfig(
            event_key_jmespath="idempotency_key",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=settings.idempotency_seconds,
            response_hook=_mark_duplicate,
        )
        store = DynamoDBPersistenceLayer(
            table_name=str(settings.idempotency_table),
            boto3_client=clients.dynamodb(settings.function_region),
        )
        send = self._send

        @idempotent_function(data_keyword_argument="identity", persistence_store=store, config=self._config,
                             key_prefix=KEY_PREFIX)
        def send_restored_work(identity: dict[str, str], work: RestoredWork, route: Route) -> dict[str, Any]:
            return {"message_id": send(work, route), "queue_url": route.queue_url,
                    "source_event_id": work.source_event_id, "duplicate": False}

        def send_once(work: RestoredWork, route: Route) -> SendResult:
            stored = send_restored_work(identity={"idempotency_key": restore_identity(work)}, work=work, route=route)
            return SendResult(stored["message_id"], stored["queue_url"], bool(stored.get("duplicate")),
                              stored["source_event_id"])

        return send_once


def restore_identity(work: RestoredWork) -> str:
    """What one restore of one object version is known by: the version's ``idempotency_key`` and the restored
    copy's expiry (the event's ``restore-expiry-time``, else the HEAD's), which every delivery of that restore's
    completion carries alike and a later restore changes. Without an expiry, the event's time stands in."""
    moment = work.restore_expiry or work.event_time
    marker = "expiry" if work.restore_expiry else "event"
    return f"{work.idempotency_key}#{marker}:{moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _mark_duplicate(response: dict[str, Any], data_record: Any) -> dict[str, Any]:
    """Powertools calls this only when it returns a stored response instead of running the function."""
    return {**response, "duplicate": True}
