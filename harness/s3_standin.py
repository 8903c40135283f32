"""The range-fair S3 stand-in: moto's server, with ranged GETs served in time proportional to the range, and a
count of the object bytes it served.

Stock moto answers a ``GET`` with ``Range`` by reading the whole object from its key buffer and slicing the range
out of it, so a 64 MiB range of a 1 GiB object costs a read of 1 GiB, and any ranged download (ours, s3transfer's,
rclone's) is slower against moto than one stream, which S3 is not. :func:`install_range_fair_gets` patches that
one step: inside a ranged ``GetObject`` the key's value is a window that reads only the bytes asked for from the
key's buffer (same headers, same status codes, same errors; everything else is moto's own code).

:class:`ServedBytes` wraps the WSGI app and counts the body bytes of every object GET it hands to the socket
(the benchmark's resume row and its "bytes received over time" curve read it):

    GET  /_standin/stats   → {"object_gets": n, "bytes_served": b, "store_bytes_read": r}
    POST /_standin/reset   → zeros

    python -m harness.s3_standin -H 127.0.0.1 -p 5000        # what MotoServer(in_process=False) starts
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["STATS_PATH", "KeyWindow", "ServedBytes", "install_range_fair_gets", "main"]

STATS_PATH = "/_standin/stats"
RESET_PATH = "/_standin/reset"

_ranged = threading.local()
_installed = False
_counter_lock = threading.Lock()
#: bytes read from the key buffers by ranged GETs (the check that a range reads only itself)
_store_bytes_read = 0


class KeyWindow:
    """What ``key.value`` is inside a ranged GET: the object's length, and a slice read on demand."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def __len__(self) -> int:
        return int(self.key.size)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, span: slice) -> bytes:
        global _store_bytes_read
        start, stop, _ = span.indices(len(self))
        with self.key.lock:  # the key's own lock, as moto's value property takes it
            self.key._value_buffer.seek(start)
            content = self.key._value_buffer.read(max(0, stop - start))
        with _counter_lock:
            _store_bytes_read += len(content)
        return bytes(content)

    def whole(self) -> bytes:
        return self[0:len(self)]


def install_range_fair_gets() -> None:
    """Patch moto's S3 responses (this process) so a ranged GET reads only its range. Idempotent."""
    global _installed
    if _installed:
        return
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    value = FakeKey.value
    get_object = S3Response.get_object
    handle_range = S3Response._handle_range_header

    def windowed_value(key: Any) -> Any:
        return KeyWindow(key) if getattr(_ranged, "active", False) else value.fget(key)  # type: ignore[attr-defined]

    def ranged_get_object(self: Any) -> Any:
        # only a plain ranged GET: a partNumber GET returns the value itself with its own 206
        if not self.headers.get("range") or self.querystring.get("partNumber"):
            return get_object(self)
        _ranged.active = True
        try:
            return get_object(self)
        finally:
            _ranged.active = False

    def whole_when_not_ranged(self: Any, request: Any, headers: dict[str, Any], content: Any) -> Any:
        status, headers, body = handle_range(self, request, headers, content)
        # moto answers a range it does not take (several ranges, unparsable) with the whole object, as S3 does
        return status, headers, body.whole() if isinstance(body, KeyWindow) else body

    FakeKey.value = property(windowed_value, value.fset)  # type: ignore[method-assign, assignment]
    S3Response.get_object = ranged_get_object  # type: ignore[method-assign]
    S3Response._handle_range_header = whole_when_not_ranged  # type: ignore[method-assign]
    _installed = True


class ServedBytes:
    """WSGI middleware: counts the body bytes of object GETs (responses with ``Accept-Ranges``) and answers the
    stats and reset paths itself."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.object_gets = 0
        self.bytes_served = 0
        self._lock = threading.Lock()

    def stats(self) -> dict[str, int]:
        with self._lock, _counter_lock:
            return {"object_gets": self.object_gets, "bytes_served": self.bytes_served,
                    "store_bytes_read": _store_bytes_read}

    def reset(self) -> None:
        global _store_bytes_read
        with self._lock, _counter_lock:
            self.object_gets = self.bytes_served = _store_bytes_read = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == STATS_PATH:
            body = json.dumps(self.stats()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path == RESET_PATH and method == "POST":
            self.reset()
            start_response("204 No Content", [])
            return []
        counted = {"object": False}

        def watching_start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            counted["object"] = method == "GET" and status[:3] in ("200", "206") and any(
                name.lower() == "accept-ranges" for name, _ in headers)
            return start_response(status, headers, *rest)

        return self._count(self.app(environ, watching_start), counted)

    def _count(self, body: Iterable[bytes], counted: dict[str, bool]) -> Iterator[bytes]:
        try:
            first = True
            for chunk in body:
                if counted["object"]:
                    with self._lock:
                        self.object_gets += first
                        self.bytes_served += len(chunk)
                    first = False
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


def main(argv: list[str] | None = None) -> None:
    """moto's server (``python -m moto.server``'s options -H/-p), range-fair and counting."""
    parser = argparse.ArgumentParser(prog="harness.s3_standin", description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto.server's main: the queue URLs name the port
    install_range_fair_gets()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # as moto.server's main
    run_simple(args.host, args.port, ServedBytes(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
