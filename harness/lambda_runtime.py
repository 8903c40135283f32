"""Run the real notify_restore handler on events, one fresh process per region, as Lambda would.

moto cannot run Python Lambdas without Docker, and the handler reads its configuration from the environment at
import, so each region's function is a child process (``python -m harness.lambda_runtime``) with
that region's environment: its routing table, its idempotency table, Powertools settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.moto_env import MOTO_ACCOUNT, LocalAws


@dataclass(frozen=True)
class LambdaContext:
    """The attributes Powertools reads from the Lambda context."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    timeout_ms: int = 30_000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{MOTO_ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


@dataclass(frozen=True)
class Invocation:
    """One event handed to the handler and what it returned (or the error it raised)."""

    event_id: str
    response: Any
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def lambda_environment(aws: LocalAws, region: str) -> dict[str, str]:
    """The function's environment variables, as the CDK construct sets them for ``region``."""
    environment = aws.environment
    notify = environment.notify
    return {
        "ROUTING_TABLE": aws.routing_table(region).to_env(),
        "IDEMPOTENCY_TABLE": environment.idempotency_table_name(region),
        "IDEMPOTENCY_DAYS": str(notify.idempotency_days),
        "ACCEPTED_SUFFIXES": ",".join(notify.accepted_suffixes()),
        "HEAD_OBJECT": "true" if notify.head_object else "false",
        "FAILURE_QUEUE_URL": aws.failure_queue_url(region),
        "POWERTOOLS_SERVICE_NAME": "notify_restore",
        "POWERTOOLS_LOG_LEVEL": notify.log_level,
        "POWERTOOLS_METRICS_NAMESPACE": environment.monitoring.namespace,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": environment.notify_function_name(region),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(notify.memory_mb),
    }


def invoke_notify_restore(
    aws: LocalAws, region: str, events: Sequence[Mapping[str, Any]], work_dir: Path, *, timeout_s: float = 60.0,
) -> list[Invocation]:
    """Invoke the handler once per event in a child process with ``region``'s environment; its logs go to
    ``work_dir/notify_restore-<region>.log``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    events_path = work_dir / f"notify_restore-{region}.events.json"
    results_path = work_dir / f"notify_restore-{region}.results.json"
    log_path = work_dir / f"notify_restore-{region}.log"
    events_path.write_text(json.dumps(list(events), indent=2), encoding="utf-8")
    env = aws.subprocess_env(**lambda_environment(aws, region))
    results_path.unlink(missing_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        process = subprocess.run(
            [sys.executable, "-m", "harness.lambda_runtime", str(events_path), str(results_path),
             aws.environment.notify_function_name(region)],
            env=env, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=timeout_s,
        )
    if process.returncode != 0 or not results_path.is_file():
        error = f"the function's process exited with {process.returncode} (see {log_path})"
        return [Invocation(event_id=str(e.get("id", "?")), response=None, error=error) for e in events]
    return [Invocation(**item) for item in json.loads(results_path.read_text(encoding="utf-8"))]


def _run_events(events_path: Path, results_path: Path, function_name: str) -> None:
    from lambdas.notify_restore.handler import lambda_handler  # reads its environment at import

    results = []
    for event in json.loads(events_path.read_text(encoding="utf-8")):
        context = LambdaContext(function_name=function_name, aws_request_id=str(uuid.uuid4()))
        try:
            response, error = lambda_handler(event, context), None
        except Exception as err:  # noqa: BLE001 - reported to the parent like Lambda reports a failed invocation
            response, error = None, f"{type(err).__name__}: {err}"
        results.append({"event_id": event.get("id", "?"), "response": response, "error": error})
    results_path.write_text(json.dumps(results, default=str), encoding="utf-8")


if __name__ == "__main__":
    _run_events(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
