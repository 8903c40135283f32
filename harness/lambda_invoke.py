"""A loopback stand-in of Lambda's Invoke API that runs the REAL notify_restore handler.

moto's Lambda runs functions in Docker images this machine cannot pull, so a client that invokes the notify
function (``finisher replay-failures``) is pointed here instead (``AWS_ENDPOINT_URL_LAMBDA``, the SDKs'
per-service endpoint). ``POST /2015-03-31/functions/{name}/invocations`` as Lambda answers it:
``InvocationType=Event`` → 202 at once, the event run afterwards on one worker thread (those waiting together in one
process, in order); ``RequestResponse`` → 200 with the handler's result, ``X-Amz-Function-Error: Unhandled``
when it raised; an unknown function → 404 ``ResourceNotFoundException``. Each event runs through
``harness.lambda_runtime.invoke_notify_restore`` in the function's region, on the environment's moto server.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from harness.lambda_runtime import Invocation, invoke_notify_restore
from harness.moto_env import LocalAws

PATH_PREFIX = "/2015-03-31/functions/"
PATH_SUFFIX = "/invocations"


@dataclass(frozen=True)
class Handled:
    """One invocation the stand-in ran: which function, how it was asked, what the handler did."""

    function_name: str
    region: str
    invocation_type: str
    result: Invocation


class LambdaInvokeStandIn:
    """``with LambdaInvokeStandIn(aws, work_dir) as lambda_api:`` — ``lambda_api.url`` is the endpoint."""

    def __init__(self, aws: LocalAws, work_dir: Path) -> None:
        self.aws, self.work_dir = aws, work_dir
        environment = aws.environment
        self.regions = {environment.notify_function_name(r.region): r.region for r in environment.regions}
        self.handled: list[Handled] = []
        self._pending: queue.Queue[tuple[str, Mapping[str, Any]] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._outstanding = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler())
        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True, name="lambda-api"),
                         threading.Thread(target=self._run_events, daemon=True, name="lambda-events")]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LambdaInvokeStandIn:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._pending.put(None)
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once every accepted Event invocation has run (False at the deadline)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout=timeout_s)

    def function_region(self, function: str) -> str | None:
        """The region of a function named by name or ARN (``arn:aws:lambda:<region>:<acct>:function:<name>``)."""
        name = function.split(":function:", 1)[-1].split(":", 1)[0]
        return self.regions.get(name)

    def run(self, function_name: str, events: list[Mapping[str, Any]], invocation_type: str) -> list[Invocation]:
        """``events`` through the handler of ``function_name``, in one process (one cold start), in order."""
        region = self.regions[function_name]
        results = invoke_notify_restore(self.aws, region, events, self.work_dir)
        self.handled += [Handled(function_name, region, invocation_type, result) for result in results]
        return results

    def accept(self, function_name: str, event: Mapping[str, Any]) -> None:
        with self._idle:
            self._outstanding += 1
        self._pending.put((function_name, event))

    def _run_events(self) -> None:
        """The accepted events in order; those waiting together for one function run in one process."""
        stopping = False
        while not stopping:
            item = self._pending.get()
            if item is None:
                return
            batch = [item]
            while not self._pending.empty():
                waiting = self._pending.get()
                if waiting is None:
                    stopping = True
                    break
                batch.append(waiting)
            try:
                for name in dict.fromkeys(n for n, _ in batch):
                    self.run(name, [event for n, event in batch if n == name], "Event")
            finally:
                with self._idle:
                    self._outstanding -= len(batch)
                    self._idle.notify_all()

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class InvokeHandler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the handler's own log is in work_dir

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not (self.path.startswith(PATH_PREFIX) and self.path.split("?")[0].endswith(PATH_SUFFIX)):
                    self._answer(400, {"message": f"not an Invoke path: {self.path}"}, "InvalidRequestContentException")
                    return
                function = unquote(self.path.split("?")[0][len(PATH_PREFIX):-len(PATH_SUFFIX)])
                region = stand_in.function_region(function)
                if region is None:
                    self._answer(404, {"Type": "User", "message": f"Function not found: {function}"},
                                 "ResourceNotFoundException")
                    return
                name = next(n for n, r in stand_in.regions.items() if r == region)
                event = json.loads(body or b"{}")
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                if kind == "Event":
                    stand_in.accept(name, event)
                    self._answer(202, None)
                elif kind == "DryRun":
                    self._answer(204, None)
                else:
                    [result] = stand_in.run(name, [event], kind)
                    payload = result.response if result.ok else {"errorMessage": result.error,
                                                                 "errorType": "Unhandled"}
                    self._answer(200, payload, function_error=None if result.ok else "Unhandled")

            def _answer(self, status: int, payload: Any, error_type: str | None = None,
                        function_error: str | None = None) -> None:
                data = b"" if payload is None else json.dumps(payload, default=str).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Amz-Executed-Version", "$LATEST")
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                if function_error:
                    self.send_header("X-Amz-Function-Error", function_error)
                self.end_headers()
                self.wfile.write(data)

        return InvokeHandler
