"""Fault injection helpers of the reliability suite.

* AWS errors: ``ErrorInjection`` is a botocore ``before-send`` hook that answers the first ``times`` calls of one
  operation with an error response (503 SlowDown, throttling …) without touching the network; botocore's own
  retry logic then sees it exactly as it would see AWS's answer. ``inject(client, …)`` hooks one client,
  ``inject_on_new_clients(monkeypatch, …)`` every client created afterwards in this process (the worker's own).
* Crashes: ``kill_at(checkpoint)`` is the environment that makes the finisher SIGKILL itself at a checkpoint
  (``onprem.finisher.work.faults``); ``kill_tree`` kills a process and everything it started, also children in
  their own session (syncOneWork.sh, rsync), as the service manager kills a crashed unit's cgroup;
  ``write_rsync_shim`` puts a slow ``rsync`` first on PATH so a test can catch a sync mid-transfer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse

from onprem.finisher.work.faults import KILL_AT_VAR

T = TypeVar("T")


class _RawBody:
    """What AWSResponse reads an injected body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@dataclass
class ErrorInjection:
    """Answer the first ``times`` calls of ``service``/``operation`` with an error; count what happened."""

    service: str
    operation: str
    times: int
    status: int
    code: str
    protocol: str = "rest-xml"
    message: str = "injected by the reliability suite"
    #: calls let through before the first injected error
    after: int = 0
    injected: int = 0
    passed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def event_name(self) -> str:
        return f"before-send.{self.service}.{self.operation}"

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        with self._lock:
            if self.passed < self.after or self.injected >= self.times:
                self.passed += 1
                return None
            self.injected += 1
        return AWSResponse(request.url, self.status, self._headers(), _RawBody(self._body()))

    def _headers(self) -> dict[str, str]:
        if self.protocol == "json":
            # SQS speaks JSON with the query protocol's error code in a header (awsQueryCompatible)
            return {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": f"{self.code};Sender",
                    "x-amzn-RequestId": "injected"}
        return {"Content-Type": "application/xml", "x-amz-request-id": "injected"}

    def _body(self) -> bytes:
        if self.protocol == "json":
            return json.dumps({"__type": f"com.amazonaws.sqs#{self.code}", "message": self.message}).encode()
        return (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{self.code}</Code>"
                f"<Message>{self.message}</Message><RequestId>injected</RequestId></Error>").encode()


def slow_down(operation: str, times: int, *, after: int = 0) -> ErrorInjection:
    """S3's ``503 SlowDown`` on ``operation`` (GetObject, HeadObject …) for ``times`` calls after ``after``."""
    return ErrorInjection("s3", operation, times, 503, "SlowDown", after=after)


def sqs_throttling(operation: str, times: int) -> ErrorInjection:
    """SQS throttling (``400 ThrottlingException``, JSON protocol) on ``operation`` for the first ``times`` calls."""
    return ErrorInjection("sqs", operation, times, 400, "ThrottlingException", protocol="json")


def sqs_unavailable(operation: str, times: int) -> ErrorInjection:
    """SQS ``503 ServiceUnavailable`` on ``operation`` for the first ``times`` calls."""
    return ErrorInjection("sqs", operation, times, 503, "ServiceUnavailable", protocol="json")


def sqs_receipt_invalid(operation: str, times: int) -> ErrorInjection:
    """``ReceiptHandleIsInvalid``: what SQS answers when a handle is no longer ours (heartbeat, delete)."""
    return ErrorInjection("sqs", operation, times, 400, "ReceiptHandleIsInvalid", protocol="json",
                          message="The input receipt handle is invalid.")


@dataclass
class RestoreHeader:
    """An ``after-call`` hook rewriting HEAD's ``x-amz-restore`` (moto completes every restore at once); a
    ``value`` of None removes it: the copy in Deep Archive has expired."""

    value: str | None
    #: rewrite only the first ``times`` HEADs (None: every one)
    times: int | None = None
    seen: int = 0
    injected: int = 0

    def __call__(self, parsed: dict[str, Any], **_: Any) -> None:
        self.seen += 1
        if self.times is None or self.injected < self.times:
            self.injected += 1
            if self.value is None:
                parsed.pop("Restore", None)
            else:
                parsed["Restore"] = self.value


def restore_ongoing(client: Any) -> RestoreHeader:
    """Make ``client``'s HEADs report the restore as still running."""
    hook = RestoreHeader('ongoing-request="true"')
    client.meta.events.register("after-call.s3.HeadObject", hook)
    return hook


def inject(client: Any, *faults: ErrorInjection) -> tuple[ErrorInjection, ...]:
    """Register ``faults`` on one boto3 client."""
    for fault in faults:
        client.meta.events.register(fault.event_name, fault)
    return faults


@contextmanager
def inject_on_new_clients(*faults: ErrorInjection) -> Iterator[tuple[ErrorInjection, ...]]:
    """Register ``faults`` on every botocore client created inside the block (whatever session creates it)."""
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        inject(client, *faults)
        return client

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session.Session, "create_client", create_client)
        yield faults


# --- crashes -------------------------------------------------------------------------------------------------
def kill_at(checkpoint: str, nth: int = 1) -> dict[str, str]:
    """Environment making the finisher SIGKILL itself at the ``nth`` hit of ``checkpoint``."""
    return {KILL_AT_VAR: f"{checkpoint}:{nth}"}


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; sessions do not matter)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process it started, children first seen before the parent dies."""
    victims = [pid, *children_of(pid)]
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue


def wait_for(predicate: Callable[[], T], deadline_s: float, what: str, interval_s: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; AssertionError naming ``what`` after the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {deadline_s:g} s")
        time.sleep(interval_s)


def write_rsync_shim(bin_dir: Path, marker: Path, bwlimit_kib: int = 64) -> Path:
    """An ``rsync`` in ``bin_dir`` that appends its arguments to ``marker`` and runs the real rsync slowly.

    Put ``bin_dir`` first on the finisher's PATH: every transfer then takes long enough to be killed mid-way.
    """
    real = shutil.which("rsync")
    if real is None:
        raise FileNotFoundError("rsync is not installed (make debs)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "rsync"
    shim.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{marker}"\n'
        f'exec "{real}" --bwlimit={bwlimit_kib} "$@"\n',
        encoding="utf-8",
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return shim
