"""Where a restored work goes: its bucket's route in the routing table, then one SendMessage."""

from __future__ import annotations

from typing import Any

from config.routing import Route, RoutingTable
from contract import RestoredWork, message_attributes
from lambdas.notify_restore.errors import UnroutableBucket
from lambdas.notify_restore.events import RestoreCompletion


def route_for(table: RoutingTable, completion: RestoreCompletion, work_rid: str) -> Route:
    """The bucket's route, or UnroutableBucket (nothing is sent anywhere)."""
    route = table.route_for(completion.bucket)
    if route is None:
        raise UnroutableBucket(work_rid, completion.bucket, completion.key, tuple(sorted(table.root)))
    return route


def send_restored_work(sqs_client: Any, queue_url: str, work: RestoredWork) -> str:
    """Put the message on the queue (standard queue: no group id); returns the SQS message id."""
    response = sqs_client.send_message(
        QueueUrl=queue_url, MessageBody=work.to_body(), MessageAttributes=message_attributes(work),
    )
    return str(response["MessageId"])
