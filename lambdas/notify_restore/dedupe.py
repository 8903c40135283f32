"""One restore completion → one message: Powertools idempotency keyed on the business ``idempotency_key``.

The key is derived from bucket, key and version-id (or ETag), never from the event id, so a redelivery or a
second event for the same object version is recognised. Without ``IDEMPOTENCY_TABLE`` every event is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
            stored = send_restored_work(identity={"idempotency_key": work.idempotency_key}, work=work, route=route)
            return SendResult(stored["message_id"], stored["queue_url"], bool(stored.get("duplicate")),
                              stored["source_event_id"])

        return send_once


def _mark_duplicate(response: dict[str, Any], data_record: Any) -> dict[str, Any]:
    """Powertools calls this only when it returns a stored response instead of running the function."""
    return {**response, "duplicate": True}
