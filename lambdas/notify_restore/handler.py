"""Lambda entry point: ``lambdas.notify_restore.handler.lambda_handler``. Powertools wiring only.

Settings come from the environment (set it before the first call); they and the AWS clients are built once per
cold start — rebuilt only if the environment changes, which in Lambda it never does (tests and the demo do).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer

from lambdas.notify_restore.process import RestoreNotifier
from lambdas.notify_restore.settings import DEFAULT_SERVICE, NotifySettings, env_snapshot

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE)
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE)


@lru_cache(maxsize=1)
def _notifier_for(snapshot: tuple[str | None, ...]) -> RestoreNotifier:
    return RestoreNotifier(NotifySettings.from_env(), logger)


def notifier() -> RestoreNotifier:
    """The function's notifier for the current environment."""
    return _notifier_for(env_snapshot())


@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Handle one EventBridge event or one S3 notification batch; see RestoreNotifier.handle."""
    return notifier().handle(event, context)
