"""The failure queue's two formats read (``work/replay.read_failure``): the original event, its works, its cause."""

from __future__ import annotations

import json

from contract import staging_key_for_rid
from onprem.finisher.work.failure_queue import FailureMessage
from onprem.finisher.work.replay import FailureFormat, read_failure

RID = "W1NLM4701"


def message(body: object, **attributes: str) -> FailureMessage:
    return FailureMessage("m-1", "r-1", body if isinstance(body, str) else json.dumps(body), attributes)


def test_a_lambda_record_of_an_event_too_old_has_no_response_and_names_its_condition() -> None:
    event = {"id": "e-1", "detail-type": "Object Restore Completed",
             "detail": {"object": {"key": staging_key_for_rid(RID)}}}
    failed = read_failure(message({"requestContext": {"condition": "EventAgeExceeded"}, "requestPayload": event,
                                   "responsePayload": None}))
    assert (failed.format, failed.event, failed.work_rids, failed.cause) == (
        FailureFormat.LAMBDA_DESTINATION, event, (RID,), "EventAgeExceeded")


def test_an_s3_notification_inside_a_lambda_record_has_its_keys_url_decoded() -> None:
    key = staging_key_for_rid(RID).replace("/", "%2F", 1)
    event = {"Records": [{"s3": {"object": {"key": key}}}, {"s3": {"object": {"key": "other/notes.txt"}}}]}
    failed = read_failure(message({"requestContext": {"condition": "RetriesExhausted"}, "requestPayload": event,
                                   "responsePayload": {"errorType": "RestoreBatchFailed", "errorMessage": "1 of 2"}}))
    assert failed.work_rids == (RID, "?other/notes.txt")
    assert failed.cause == "RetriesExhausted: RestoreBatchFailed: 1 of 2"


def test_an_eventbridge_dlq_message_is_the_event_with_its_cause_in_the_attributes() -> None:
    event = {"id": "e-2", "detail-type": "Object Restore Completed",
             "detail": {"object": {"key": staging_key_for_rid(RID)}}}
    failed = read_failure(message(event, ERROR_CODE="RESOURCE_NOT_FOUND"))
    assert (failed.format, failed.work_rids, failed.cause) == (FailureFormat.EVENTBRIDGE_DLQ, (RID,),
                                                               "RESOURCE_NOT_FOUND")


def test_anything_else_is_unreadable_and_carries_no_event() -> None:
    for body in ("not json", "[1, 2]", {"requestContext": {}, "requestPayload": "x"}, {"hello": "world"}):
        failed = read_failure(message(body))
        assert failed.format is FailureFormat.UNREADABLE and failed.event is None, body
