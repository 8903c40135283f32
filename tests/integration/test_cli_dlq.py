"""``finisher dlq list | show | redrive`` against moto's SQS: messages put in the DLQ the way the finisher puts
them there (``WorkQueue.to_dlq``: body kept, failure cause and message as attributes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from onprem.finisher.cli.app import app
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.clients import AwsClients
from tests.integration.test_cli import bag_zip, cli
from tests.integration.worker_support import DLQ, QUEUE, REGION, aws, queue_messages, send, stage_object

__all__ = ["aws", "cli"]


def dead_letters(aws: AwsClients, tmp_path: Path, failures: dict[str, str]) -> WorkQueue:
    """One message per work sent to the work queue, received and moved to the DLQ with its cause."""
    queue = WorkQueue(aws.client("sqs", REGION), REGION, QUEUE, DLQ)
    for rid in failures:
        send(aws, stage_object(aws, bag_zip(tmp_path, rid), rid))
    received = {}
    while len(received) < len(failures):
        received.update((m.message_id, m) for m in queue.receive(10, 0, 60))
    for message in received.values():
        rid = json.loads(message.body)["work_rid"]
        queue.to_dlq(message, failures[rid], f"{rid}: {failures[rid]} in data/[b]x.tif")
    return queue


def test_list_shows_work_cause_message_receives_and_age_and_leaves_them_there(
        tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    queue = dead_letters(aws, tmp_path, {"W1NLM4701": "bag_invalid", "W1NLM4702": "unsafe_zip"})
    listed = cli.invoke(app, ["dlq", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["work_rid"]: row for row in json.loads(listed.stdout)}
    assert {rid: row["cause"] for rid, row in rows.items()} == {"W1NLM4701": "bag_invalid",
                                                                 "W1NLM4702": "unsafe_zip"}
    assert rows["W1NLM4701"]["failure_message"] == "W1NLM4701: bag_invalid in data/[b]x.tif"
    assert all(row["receive_count"] == 1 and row["age_s"] >= 0 for row in rows.values())  # the work queue's
    table = cli.invoke(app, ["dlq", "list"])
    assert "W1NLM4702" in table.stdout and "2 message(s) in the DLQ" in table.stdout
    assert queue.depth()["dlq"] == 2  # listed, and visible again at once
    again = json.loads(cli.invoke(app, ["dlq", "list", "--json"]).stdout)
    assert [row["receive_count"] for row in again] == [1, 1]  # listing does not count as a receive of the work


def test_show_prints_one_message_with_its_body(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    dead_letters(aws, tmp_path, {"W1NLM4701": "bag_invalid"})
    shown = cli.invoke(app, ["dlq", "show", "W1NLM4701"])
    assert shown.exit_code == 0, shown.output
    assert "cause: bag_invalid" in shown.stdout and "data/[b]x.tif" in shown.stdout
    assert '"work_rid": "W1NLM4701"' in shown.stdout or '"work_rid":"W1NLM4701"' in shown.stdout
    assert cli.invoke(app, ["dlq", "show", "W9NOPE99"]).exit_code == 1


def test_redrive_by_cause_moves_only_those(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    queue = dead_letters(aws, tmp_path, {"W1NLM4701": "bag_invalid", "W1NLM4702": "unsafe_zip",
                                         "W1NLM4703": "bag_invalid"})
    assert queue.depth()["dlq"] == 3
    result = cli.invoke(app, ["dlq", "redrive", "--cause", "bag_invalid"])
    assert result.exit_code == 0, result.output
    assert "2 message(s) moved" in result.stdout
    back = [json.loads(m["Body"])["work_rid"] for m in queue_messages(aws, QUEUE)]
    assert sorted(back) == ["W1NLM4701", "W1NLM4703"]
    assert [row["work_rid"] for row in json.loads(cli.invoke(app, ["dlq", "list", "--json"]).stdout)] == [
        "W1NLM4702"]


def test_redrive_by_rid_and_by_age(tmp_path: Path, aws: AwsClients, cli: CliRunner) -> None:
    dead_letters(aws, tmp_path, {"W1NLM4701": "bag_invalid", "W1NLM4702": "unsafe_zip"})
    too_young = json.loads(cli.invoke(app, ["dlq", "redrive", "--older-than", "2d", "--json"]).stdout)
    assert too_young == []
    moved = json.loads(cli.invoke(app, ["dlq", "redrive", "--rid", "W1NLM4702", "--older-than", "0s",
                                        "--json"]).stdout)
    assert [row["work_rid"] for row in moved] == ["W1NLM4702"]
    assert [json.loads(m["Body"])["work_rid"] for m in queue_messages(aws, QUEUE)] == ["W1NLM4702"]


@pytest.mark.parametrize("age", ["2 days", "12", "h"])
def test_an_age_that_does_not_read_is_refused(cli: CliRunner, age: str) -> None:
    result = cli.invoke(app, ["dlq", "redrive", "--older-than", age])
    assert result.exit_code == 2 and "is not an age" in " ".join(result.output.replace("│", " ").split())
