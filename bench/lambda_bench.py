"""notify_restore: warm handler time and cold start.

    python -m bench.lambda_bench [--invocations 200] [--cold-runs 5]

- warm: the real ``lambda_handler`` in this process against moto ``mock_aws`` (in-process: no network, so this is
  the function's own CPU time plus moto's handling of SendMessage / the idempotency table's Put/Update), median
  over ``--invocations`` new restores (and, with idempotency, as many redeliveries of one restore);
- cold import: fresh ``python -c "import lambdas.notify_restore.handler"`` interpreters, median of
  ``--cold-runs``, minus the median of ``python -c pass`` (tracing off, as in tests; and tracing on, as in Lambda:
  the X-Ray SDK is imported and patches botocore);
- cold first invocation: a fresh interpreter imports the handler and handles one new restore against the demo's
  loopback moto server (what a cold invocation pays beyond the import: boto3, clients, first calls).

Goals: warm <= 50 ms, cold import <= 1 s.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.moto_env import patched_environ

REPO_ROOT = Path(__file__).resolve().parents[1]
REPRODUCE = "python -m bench.lambda_bench --invocations 200 --cold-runs 5"
GOAL_WARM_MS = 50.0
GOAL_COLD_IMPORT_S = 1.0
EVENT_FILE = REPO_ROOT / "tests" / "data" / "events" / "object-restore-completed.json"
BENCH_REGION = "ap-northeast-2"
BENCH_BUCKET = "glacier.staging.nlm.bdrc.org"
BENCH_TABLE = "bench-notify-idempotency"
#: the variables the handler reads; cleared around the in-process runs so the caller's shell cannot leak in
HANDLER_VARIABLES = ("ROUTING_TABLE", "IDEMPOTENCY_TABLE", "IDEMPOTENCY_DAYS", "ACCEPTED_SUFFIXES", "HEAD_OBJECT",
                     "AWS_ENDPOINT_URL", "AWS_PROFILE", "POWERTOOLS_LOG_LEVEL")

_CHILD_CODE = """
import json, sys, time, uuid
started = time.perf_counter()
from lambdas.notify_restore.handler import lambda_handler
imported = time.perf_counter()
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "bench-notify-restore", 256, str(uuid.uuid4())
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:bench-notify-restore"
    def get_remaining_time_in_millis(self): return 30000
with open(sys.argv[1]) as f:
    event = json.load(f)
summary = lambda_handler(event, Context())
done = time.perf_counter()
print("BENCH " + json.dumps({"import_s": imported - started, "first_invocation_s": done - imported,
                             "counts": summary["counts"]}))
"""


@dataclass(frozen=True)
class FakeContext:
    function_name: str = "bench-notify-restore"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "bench"
    invoked_function_arn: str = f"arn:aws:lambda:{BENCH_REGION}:123456789012:function:bench-notify-restore"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def restore_event(rid: str, bucket: str = BENCH_BUCKET) -> dict[str, Any]:
    """The sample EventBridge event for another work (new event id, new key)."""
    from contract import staging_key_for_rid

    event = copy.deepcopy(json.loads(EVENT_FILE.read_text(encoding="utf-8")))
    event["id"] = str(uuid.uuid4())
    event["detail"]["bucket"]["name"] = bucket
    event["resources"] = [f"arn:aws:s3:::{bucket}"]
    event["detail"]["object"]["key"] = staging_key_for_rid(rid)
    return event




def warm_milliseconds(invocations: int, *, idempotency: bool, duplicates: bool = False,
                      ) -> tuple[list[float], list[float]]:
    """Per-invocation wall and CPU times (ms) of the real handler in this process against moto ``mock_aws``."""
    import boto3
    from moto import mock_aws

    from config.routing import Route, RoutingTable

    environ = {"AWS_REGION": BENCH_REGION, "AWS_DEFAULT_REGION": BENCH_REGION, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "POWERTOOLS_TRACE_DISABLED": "true",
               "POWERTOOLS_SERVICE_NAME": "notify_restore", "POWERTOOLS_METRICS_NAMESPACE": "BDRC/Restore",
               "IDEMPOTENCY_DAYS": "30", "ACCEPTED_SUFFIXES": ".bag.zip"}
    with patched_environ(environ, remove=HANDLER_VARIABLES), mock_aws():
        queue_url = boto3.client("sqs", region_name=BENCH_REGION).create_queue(QueueName="bench")["QueueUrl"]
        table = RoutingTable({BENCH_BUCKET: Route(collection="NLM", region=BENCH_REGION, queue_url=queue_url)})
        os.environ["ROUTING_TABLE"] = table.to_env()
        if idempotency:
            boto3.client("dynamodb", region_name=BENCH_REGION).create_table(
                TableName=BENCH_TABLE, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
            os.environ["IDEMPOTENCY_TABLE"] = BENCH_TABLE
        from lambdas.notify_restore import handler

        sink = io.StringIO()
        handler.logger.registered_handler.setStream(sink)  # INFO lines are still formatted, as in Lambda
        repeated = restore_event("W9BENCH0000")
        events = [restore_event(f"W9BENCH{i + 1:04d}") for i in range(invocations)]
        if duplicates:
            events = [repeated | {"id": str(uuid.uuid4())} for _ in range(invocations)]
        times: list[float] = []
        cpu_times: list[float] = []
        with redirect_stdout(sink):
            handler.lambda_handler(repeated, FakeContext())  # warm-up: clients, settings, first table write
            for event in events:
                started, started_cpu = time.perf_counter(), time.process_time()
                handler.lambda_handler(event, FakeContext())
                times.append((time.perf_counter() - started) * 1000)
                cpu_times.append((time.process_time() - started_cpu) * 1000)
                sink.seek(0)
                sink.truncate()
        handler.logger.registered_handler.setStream(sys.stdout)
        return times, cpu_times


def _run_seconds(code: str, env: Mapping[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` fresh interpreters running ``code``."""
    times, cpu_times = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=dict(env), cwd=REPO_ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times, cpu_times


def cold_import_seconds(runs: int, *, tracing: bool) -> dict[str, float]:
    """Median wall time of a fresh interpreter importing the handler, and of one doing nothing."""
    env = {k: v for k, v in os.environ.items() if k not in HANDLER_VARIABLES}
    if tracing:  # what Lambda does: Tracer is enabled, imports the X-Ray SDK and patches botocore
        env.pop("POWERTOOLS_TRACE_DISABLED", None)
        env["LAMBDA_TASK_ROOT"] = str(REPO_ROOT)
        env["AWS_XRAY_CONTEXT_MISSING"] = "IGNORE_ERROR"
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    interpreter, interpreter_cpu = map(statistics.median, _run_seconds("pass", env, runs))
    imported, imported_cpu = map(statistics.median, _run_seconds("import lambdas.notify_restore.handler", env, runs))
    return {"interpreter_s": interpreter, "import_s": imported, "net_s": imported - interpreter,
            "net_cpu_s": imported_cpu - interpreter_cpu}


def cold_first_invocation(runs: int, *, idempotency: bool) -> dict[str, float]:
    """A fresh interpreter imports the handler and handles one new restore against a loopback moto server."""
    from config.loader import load_environment
    from harness.lambda_runtime import lambda_environment
    from harness.moto_env import local_aws

    imports, firsts = [], []
    with local_aws(load_environment("dev")) as aws, tempfile.TemporaryDirectory() as scratch:
        region = aws.regions[0]
        bucket = next(iter(aws.routing_table(region).root))
        extra = lambda_environment(aws, region)
        if not idempotency:
            extra["IDEMPOTENCY_TABLE"] = ""
        env = aws.subprocess_env(**extra)
        for run in range(runs):
            event_path = Path(scratch) / f"event-{run}.json"
            event_path.write_text(json.dumps(restore_event(f"W9COLD{run:04d}{int(idempotency)}", bucket)))
            process = subprocess.run([sys.executable, "-c", _CHILD_CODE, str(event_path)], env=env, cwd=REPO_ROOT,
                                     check=True, capture_output=True, text=True)
            line = next(x for x in process.stdout.splitlines() if x.startswith("BENCH "))
            result = json.loads(line.removeprefix("BENCH "))
            if result["counts"] != {"routed": 1}:
                raise RuntimeError(f"cold run {run}: expected one routed restore, got {result['counts']}")
            imports.append(result["import_s"])
            firsts.append(result["first_invocation_s"])
    return {"import_s": statistics.median(imports), "first_invocation_s": statistics.median(firsts)}


def measure(invocations: int = 200, cold_runs: int = 5) -> dict[str, str]:
    """Every measurement as ``{measure: formatted value}`` (what bench/run.py's lambda section prints)."""
    rows: dict[str, str] = {}
    for label, kwargs in (("no idempotency", {"idempotency": False}),
                          ("idempotency, new restores", {"idempotency": True}),
                          ("idempotency, redeliveries (suppressed)", {"idempotency": True, "duplicates": True})):
        times, cpu_times = warm_milliseconds(invocations, **kwargs)
        p95 = statistics.quantiles(times, n=20)[-1]
        rows[f"warm median ({label}), n={invocations}"] = (
            f"{statistics.median(times):.2f} ms wall, {statistics.median(cpu_times):.2f} ms CPU "
            f"(p95 wall {p95:.2f} ms; goal <= {GOAL_WARM_MS:.0f} ms)")
    for tracing in (False, True):
        cold = cold_import_seconds(cold_runs, tracing=tracing)
        rows[f"cold import, tracing {'on' if tracing else 'off'} (median of {cold_runs}, minus interpreter)"] = (
            f"{cold['net_s'] * 1000:.0f} ms wall, {cold['net_cpu_s'] * 1000:.0f} ms CPU (interpreter "
            f"{cold['interpreter_s'] * 1000:.0f} ms; goal <= {GOAL_COLD_IMPORT_S * 1000:.0f} ms)")
    for idempotency in (False, True):
        first = cold_first_invocation(cold_runs, idempotency=idempotency)
        rows[f"cold first invocation, {'with' if idempotency else 'no'} idempotency (moto server, "
             f"median of {cold_runs})"] = (
            f"{first['first_invocation_s'] * 1000:.0f} ms after an import of {first['import_s'] * 1000:.0f} ms")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=200, help="warm invocations per variant")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh interpreters per cold measurement")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} at start (wall times grow with load; CPU times less)\n")
    rows = measure(args.invocations, args.cold_runs)
    width = max(map(len, rows))
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for name, value in rows.items():
        print(f"{name:<{width}}  {value}")
    print(f"\nreproduce: .venv/bin/{REPRODUCE}")


if __name__ == "__main__":
    main()
