"""Lambda entry point: ``lambdas.notify_restore.handler.lambda_handler``. Powertools wiring only.

Settings come from the environment (set it before the first call); they and the AWS clients are built once per
cold start — rebuilt only if the environment changes, which in Lambda it never does (tests and the demo do).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger

from lambdas.notify_restore.process import RestoreNotifier
from lambdas.notify_restore.settings import DEFAULT_SERVICE, NotifySettings, env_snapshot

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE
logger = Logger(service=SERVICE)


def _tracing_enabled(environ: Mapping[str, str]) -> bool:
    """Powertools' own rule (in Lambda, unless POWERTOOLS_TRACE_DISABLED), decided before Tracer is imported:
    Tracer imports the X-Ray SDK even when disabled, a third of the import time."""
    disabled = environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in {"1", "true", "yes", "on"}
    return bool(environ.get("LAMBDA_TASK_ROOT")) and not disabled


def _traced(handler: Callable[[Any, Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
    if not _tracing_enabled(os.environ):
        return handler
    from aws_lambda_powertools import Tracer

    # the function's only outbound calls are AWS API calls: patching botocore alone halves Tracer's import time
    tracer = Tracer(service=SERVICE, patch_modules=("botocore",))
    return tracer.capture_lambda_handler(capture_response=False)(handler)


@lru_cache(maxsize=1)
def _notifier_for(snapshot: tuple[str | None, ...]) -> RestoreNotifier:
    return RestoreNotifier(NotifySettings.from_env(), logger)


def notifier() -> RestoreNotifier:
    """The function's notifier for the current environment."""
    return _notifier_for(env_snapshot())


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@_traced
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Handle one EventBridge event or one S3 notification batch; see RestoreNotifier.handle."""
    return notifier().handle(event, context)
