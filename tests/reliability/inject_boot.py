"""Fault injection inside a finisher subprocess: ``RELIABILITY_FAULTS`` (JSON) names the faults, this module installs
them before the CLI starts, and each injection is appended to ``RELIABILITY_FAULTS_REPORT`` (one line each).

    python -c "import tests.reliability.inject_boot as b; b.install_from_env(); from onprem.finisher.cli.app import \
main; main()" run --drain

Fault specs: ``{"kind": "error", "service": "s3", "operation": "GetObject", "status": 503, "code": "SlowDown",
"times": 2, "protocol": "rest-xml", "after": 0}``, ``{"kind": "restore_ongoing", "times": 1}`` (HEAD reports the
restore still running), ``{"kind": "restore_expired", "times": 1}`` (HEAD shows no restored copy) and
``{"kind": "write_limit", "bytes": N}`` (de-bag writes fail with ENOSPC past N bytes, where a small filesystem cannot
be mounted).
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import botocore.session

from tests.reliability.faults import ErrorInjection, RestoreHeader

FAULTS_VAR = "RELIABILITY_FAULTS"
REPORT_VAR = "RELIABILITY_FAULTS_REPORT"
BOOT = ("import tests.reliability.inject_boot as boot; boot.install_from_env(); "
        "from onprem.finisher.cli.app import main; main()")
_LOCK = threading.Lock()


def _report(line: str) -> None:
    path = os.environ.get(REPORT_VAR)
    if path:
        with _LOCK, open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


class _Reported:
    """Wraps a hook: every injection it makes is reported."""

    def __init__(self, name: str, hook: Any) -> None:
        self.name, self.hook = name, hook

    def __call__(self, **kwargs: Any) -> Any:
        before = getattr(self.hook, "injected", None)
        result = self.hook(**kwargs)
        after = getattr(self.hook, "injected", None)
        if result is not None or (after is not None and after != before):
            _report(self.name)
        return result


def _hooks(specs: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    hooks: list[tuple[str, Any]] = []
    for spec in specs:
        kind = spec.get("kind", "error")
        if kind == "error":
            fault = ErrorInjection(spec["service"], spec["operation"], int(spec["times"]), int(spec["status"]),
                                   spec["code"], protocol=spec.get("protocol", "rest-xml"),
                                   after=int(spec.get("after", 0)))
            hooks.append((fault.event_name, _Reported(f"{spec['service']}.{spec['operation']} {spec['code']}",
                                                      fault)))
        elif kind == "restore_ongoing":
            header = RestoreHeader('ongoing-request="true"', times=int(spec.get("times", 1)))
            hooks.append(("after-call.s3.HeadObject", _Reported("s3.HeadObject restore_ongoing", header)))
        elif kind == "restore_expired":
            header = RestoreHeader(None, times=int(spec.get("times", 1)))
            hooks.append(("after-call.s3.HeadObject", _Reported("s3.HeadObject restore_expired", header)))
    return hooks


def _limit_debag_writes(limit: int) -> None:
    from onprem.finisher.debag import member_stream as debag_extract

    written = [0]
    real_open = open

    class LimitedFile:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._file = real_open(*args, **kwargs)

        def write(self, chunk: Any) -> int:
            written[0] += len(chunk)
            if written[0] > limit:
                _report("write_limit ENOSPC")
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return self._file.write(chunk)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._file, name)

        def __enter__(self) -> LimitedFile:
            return self

        def __exit__(self, *exc: Any) -> None:
            self._file.close()

    debag_extract.open = LimitedFile  # type: ignore[attr-defined]


def install_from_env() -> None:
    """Install the faults named by ``RELIABILITY_FAULTS`` on every botocore client this process creates."""
    specs = json.loads(os.environ.get(FAULTS_VAR) or "[]")
    for spec in specs:
        if spec.get("kind") == "write_limit":
            _limit_debag_writes(int(spec["bytes"]))
    hooks = _hooks(specs)
    if not hooks:
        return
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        for event_name, hook in hooks:
            client.meta.events.register(event_name, hook)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


def injected(report: Path) -> list[str]:
    """The injections a subprocess reported."""
    return report.read_text(encoding="utf-8").splitlines() if report.is_file() else []
