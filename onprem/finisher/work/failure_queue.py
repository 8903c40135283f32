"""The AWS calls of ``finisher replay-failures``: the notify function's failure queue (receive, delete, release)
and the asynchronous Invoke of the notify function.

The failure queue is ``EnvironmentConfig.failure_queue_name(region)`` (``infra/cdk/constructs/work_queues.py``): the
Lambda's on-failure destination and the EventBridge rule's target DLQ both write to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

#: how long a received failure stays hidden while the replay looks at it (released at the end when kept)
HOLD_SECONDS = 300
#: a short long-poll: an empty answer then means empty, not "this SQS host had nothing"
RECEIVE_WAIT_SECONDS = 1
#: Lambda's answer to an accepted InvocationType=Event
ACCEPTED = 202


@dataclass(frozen=True)
class FailureMessage:
    message_id: str
    receipt_handle: str
    body: str
    #: message attributes as strings (the EventBridge DLQ's ERROR_CODE, ERROR_MESSAGE, RULE_ARN, TARGET_ARN)
    attributes: Mapping[str, str]


class FailureQueue:
    """One region's failure queue, read by one replay: what it receives stays hidden until deleted or released."""

    def __init__(self, sqs: Any, region: str, url: str) -> None:
        self.sqs, self.region, self.url = sqs, region, url

    def receive(self, count: int) -> list[FailureMessage]:
        answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=max(1, min(10, count)),
                                          WaitTimeSeconds=RECEIVE_WAIT_SECONDS, VisibilityTimeout=HOLD_SECONDS,
                                          MessageAttributeNames=["All"])
        return [FailureMessage(m["MessageId"], m["ReceiptHandle"], m["Body"],
                               {k: str(v.get("StringValue", "")) for k, v in m.get("MessageAttributes", {}).items()})
                for m in answer.get("Messages", [])]

    def delete(self, message: FailureMessage) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)

    def release(self, message: FailureMessage) -> None:
        """Visible again at once: a message kept (dry run, unreadable, refused) is not hidden for the hold."""
        self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=message.receipt_handle,
                                           VisibilityTimeout=0)


def failure_queue_url(sqs: Any, name: str) -> str:
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


class NotifyInvoker:
    """Hands an event to the notify function asynchronously (InvocationType=Event), as EventBridge does."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self.client, self.function_name = lambda_client, function_name

    def invoke(self, event: Mapping[str, Any]) -> str | None:
        """None when Lambda accepted the event (202), else why not."""
        try:
            answer = self.client.invoke(FunctionName=self.function_name, InvocationType="Event",
                                        Payload=json.dumps(event).encode("utf-8"))
        except ClientError as err:
            error = err.response.get("Error", {})
            return f"{error.get('Code', '?')}: {error.get('Message', err)}"
        except BotoCoreError as err:
            return f"{type(err).__name__}: {err}"
        status = int(answer.get("StatusCode", 0))
        return None if status == ACCEPTED else f"Lambda answered {status}, not {ACCEPTED}"
