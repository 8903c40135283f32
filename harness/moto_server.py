"""A moto server on 127.0.0.1 (a thread of this process, or a child process) and the loopback guard.

The child process is the range-fair S3 stand-in (:mod:`harness.s3_standin`): moto whose ranged GETs read only
their range, counting the object bytes it serves (``standin_stats``).

Every endpoint the demo and the tests talk to goes through ``ensure_loopback``: nothing here may reach real AWS.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]


class NonLoopbackEndpoint(RuntimeError):
    """The demo or a test would talk to an endpoint that is not on this machine (e.g. real AWS)."""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_loopback(url: str, what: str) -> str:
    """Return ``url`` when its host is loopback, else raise NonLoopbackEndpoint naming ``what``."""
    if not is_loopback_url(url):
        raise NonLoopbackEndpoint(
            f"{what} is {url!r}, which is not a loopback address: the demo only runs against a local moto "
            "server and never touches real AWS"
        )
    return url


def refuse_configured_endpoints(environ: Mapping[str, str]) -> None:
    """Refuse any ``*ENDPOINT_URL*`` variable (``AWS_ENDPOINT_URL_S3`` …) that points off this machine."""
    for name, value in sorted(environ.items()):
        if "ENDPOINT_URL" in name.upper() and value:
            ensure_loopback(value, f"${name}")


class MotoServer:
    """A moto server on 127.0.0.1: a thread of this process (fast) or a child process (can be killed; the
    range-fair stand-in, see :mod:`harness.s3_standin`)."""

    def __init__(self, *, in_process: bool = True, port: int = 0) -> None:
        self.in_process = in_process
        self._port = port
        self._thread_server: Any = None
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint_url = ""

    def start(self, deadline_s: float = 20.0) -> str:
        if self.in_process:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
            self._thread_server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
            self._thread_server.start()
            host, port = self._thread_server.get_host_and_port()
        else:
            host, port = "127.0.0.1", self._port or free_port()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "harness.s3_standin", "-H", host, "-p", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT,
            )
        self.endpoint_url = f"http://{host}:{port}"
        self._wait_ready(deadline_s)
        # the in-process backends are global: start every server from an empty state
        _post(f"{self.endpoint_url}/moto-api/reset")
        return self.endpoint_url

    def _wait_ready(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=2):  # noqa: S310
                    return
            except OSError as err:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"moto server exited with {self._process.returncode}") from err
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server at {self.endpoint_url} not ready after {deadline_s}s") from err
                time.sleep(0.05)

    def stop(self) -> None:
        if self._thread_server is not None:
            self._thread_server.stop()
            self._thread_server = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


def standin_stats(endpoint_url: str) -> dict[str, int]:
    """The stand-in's counters: ``object_gets``, ``bytes_served`` (object bytes sent), ``store_bytes_read``."""
    from harness.s3_standin import STATS_PATH

    with urllib.request.urlopen(f"{endpoint_url}{STATS_PATH}", timeout=10) as answer:  # noqa: S310 - loopback
        return dict(json.loads(answer.read()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str) -> None:
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - loopback moto API
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        return
