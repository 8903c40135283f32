"""``finisher replay-failures``: the restore events the notify function could not handle, read from its failure
queue and handed to it again.

The failure queue holds two formats:
- a Lambda on-failure destination record (the async invoke failed past its retries or its age): the original event
  in ``requestPayload``, the failure in ``requestContext.condition`` and ``responsePayload`` (``errorType``,
  ``errorMessage``);
- an EventBridge target-DLQ message (the rule could not invoke the function): the event itself as the body, the
  failure in the message attributes ``ERROR_CODE`` and ``ERROR_MESSAGE``.
Each original event is invoked again (InvocationType=Event, as EventBridge invokes); its failure message is deleted
only once Lambda accepted the invoke. A message of neither format is left where it is, named.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import unquote_plus

from contract import ContractError
from contract.keys import rid_from_staging_key
from onprem.finisher.work.failure_queue import FailureMessage, FailureQueue


class FailureFormat(StrEnum):
    LAMBDA_DESTINATION = "lambda-destination"
    EVENTBRIDGE_DLQ = "eventbridge-dlq"
    UNREADABLE = "unreadable"


class Outcome(StrEnum):
    WOULD_REPLAY = "would-replay"  # --dry-run
    REPLAYED = "replayed"  # invoked, accepted, failure message deleted
    REFUSED = "refused"  # the invoke was not accepted: the message stays
    UNREADABLE = "unreadable"  # neither format: the message stays


@dataclass(frozen=True)
class FailedEvent:
    """One failure message read: the original event, the works it names, why it failed."""

    message: FailureMessage
    format: FailureFormat
    event: Mapping[str, Any] | None
    work_rids: tuple[str, ...]
    cause: str


@dataclass(frozen=True)
class Replayed:
    region: str
    failed: FailedEvent
    outcome: Outcome
    detail: str | None = None  # why an invoke was refused

    def as_json(self) -> dict[str, Any]:
        event = self.failed.event or {}
        return {"region": self.region, "message_id": self.failed.message.message_id,
                "format": str(self.failed.format), "work_rids": list(self.failed.work_rids),
                "event_id": event.get("id"), "cause": self.failed.cause, "outcome": str(self.outcome),
                "detail": self.detail}


class Invoker(Protocol):
    def invoke(self, event: Mapping[str, Any]) -> str | None: ...


def _keys(event: Mapping[str, Any]) -> Iterator[str]:
    """The object keys of either shape the function reads (S3-notification keys are URL-encoded)."""
    detail = event.get("detail")
    if isinstance(detail, Mapping):
        key = detail.get("object", {}).get("key") if isinstance(detail.get("object"), Mapping) else None
        if isinstance(key, str):
            yield key
    for record in event.get("Records", []) if isinstance(event.get("Records"), list) else []:
        key = record.get("s3", {}).get("object", {}).get("key") if isinstance(record, Mapping) else None
        if isinstance(key, str):
            yield unquote_plus(key)


def work_rids_of(event: Mapping[str, Any]) -> tuple[str, ...]:
    """The RIDs the event's keys are the staging keys of; a key outside the layout shows as ``?<key>``."""
    rids = []
    for key in _keys(event):
        try:
            rids.append(rid_from_staging_key(key, (".bag.zip", ".zip")))
        except ContractError:
            rids.append(f"?{key}")
    return tuple(rids)


def _lambda_cause(record: Mapping[str, Any]) -> str:
    context = record.get("requestContext") or {}
    response = record.get("responsePayload")
    cause = str(context.get("condition") or "failed")
    if isinstance(response, Mapping) and (response.get("errorType") or response.get("errorMessage")):
        cause += f": {response.get('errorType', 'Error')}: {response.get('errorMessage', '')}".rstrip(": ")
    return cause


def read_failure(message: FailureMessage) -> FailedEvent:
    """Which format ``message`` is, its original event, RIDs and cause."""
    try:
        body = json.loads(message.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return FailedEvent(message, FailureFormat.UNREADABLE, None, (), "the body is not a JSON object")
    if "requestContext" in body and "requestPayload" in body:
        event = body["requestPayload"]
        if not isinstance(event, dict):
            return FailedEvent(message, FailureFormat.UNREADABLE, None, (), "requestPayload is not an event")
        return FailedEvent(message, FailureFormat.LAMBDA_DESTINATION, event, work_rids_of(event),
                           _lambda_cause(body))
    if "detail-type" in body or "Records" in body:
        code = message.attributes.get("ERROR_CODE", "failed")
        text = message.attributes.get("ERROR_MESSAGE", "")
        return FailedEvent(message, FailureFormat.EVENTBRIDGE_DLQ, body, work_rids_of(body),
                           f"{code}: {text}" if text else code)
    return FailedEvent(message, FailureFormat.UNREADABLE, None, (),
                       "neither a Lambda destination record nor an EventBridge event")


def replay_failures(queue: FailureQueue, invoker: Invoker, *, limit: int | None = None,
                    dry_run: bool = False) -> list[Replayed]:
    """Read ``queue`` until it is empty (or ``limit`` events were handled) and replay each original event through
    ``invoker``; every message not deleted is released at the end."""
    handled: list[Replayed] = []
    kept: list[FailureMessage] = []
    try:
        while limit is None or len(handled) < limit:
            messages = queue.receive(10 if limit is None else limit - len(handled))
            if not messages:
                break
            for message in messages:
                if limit is not None and len(handled) >= limit:
                    kept.append(message)
                    continue
                replayed = _replay_one(queue, invoker, read_failure(message), dry_run)
                handled.append(replayed)
                if replayed.outcome is not Outcome.REPLAYED:
                    kept.append(message)
    finally:
        for message in kept:
            queue.release(message)
    return handled


def _replay_one(queue: FailureQueue, invoker: Invoker, failed: FailedEvent, dry_run: bool) -> Replayed:
    if failed.event is None:
        return Replayed(queue.region, failed, Outcome.UNREADABLE)
    if dry_run:
        return Replayed(queue.region, failed, Outcome.WOULD_REPLAY)
    refused = invoker.invoke(failed.event)
    if refused is not None:
        return Replayed(queue.region, failed, Outcome.REFUSED, refused)
    queue.delete(failed.message)  # only after Lambda accepted the event: a lost invoke keeps its failure
    return Replayed(queue.region, failed, Outcome.REPLAYED)
