"""The function's settings, read from its environment (set by the CDK construct, or by the demo and tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from config.routing import ROUTING_ENV_VAR, RoutingTable
from lambdas.notify_restore.errors import InvalidSettings

DEFAULT_SUFFIXES = (".bag.zip",)
DEFAULT_IDEMPOTENCY_DAYS = 30
DEFAULT_NAMESPACE = "BDRC/Restore"
DEFAULT_SERVICE = "notify_restore"
#: every variable the settings depend on; a change of any of them (tests, demo) builds new settings
ENV_NAMES = (
    ROUTING_ENV_VAR, "ACCEPTED_SUFFIXES", "HEAD_OBJECT", "IDEMPOTENCY_TABLE", "IDEMPOTENCY_DAYS",
    "AWS_REGION", "AWS_DEFAULT_REGION", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_SERVICE_NAME",
    "AWS_ENDPOINT_URL",
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class NotifySettings:
    routing_table: RoutingTable
    accepted_suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    head_object: bool = False
    #: None: no deduplication (local use only)
    idempotency_table: str | None = None
    idempotency_days: int = DEFAULT_IDEMPOTENCY_DAYS
    #: the function's own region: where its idempotency table lives
    function_region: str = "us-east-1"
    metrics_namespace: str = DEFAULT_NAMESPACE
    service: str = DEFAULT_SERVICE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifySettings:
        """Read and check every variable; raises InvalidSettings naming the variable and the problem."""
        env = os.environ if environ is None else environ
        routing_text = env.get(ROUTING_ENV_VAR, "").strip()
        if not routing_text:
            raise InvalidSettings(f"{ROUTING_ENV_VAR} is not set: the function cannot route any bucket")
        try:
            routing_table = RoutingTable.from_env(routing_text)
        except ValidationError as err:
            raise InvalidSettings(f"{ROUTING_ENV_VAR} is not a routing table: {err}") from err
        suffixes = tuple(s.strip() for s in env.get("ACCEPTED_SUFFIXES", "").split(",") if s.strip())
        if any(not s.startswith(".") for s in suffixes):
            raise InvalidSettings(f"ACCEPTED_SUFFIXES entries must start with '.': {suffixes}")
        head = env.get("HEAD_OBJECT", "false").strip().lower()
        if head not in _TRUE | _FALSE:
            raise InvalidSettings(f"HEAD_OBJECT must be true or false, got {head!r}")
        days_text = env.get("IDEMPOTENCY_DAYS", str(DEFAULT_IDEMPOTENCY_DAYS)).strip()
        if not days_text.isdigit() or int(days_text) < 1:
            raise InvalidSettings(f"IDEMPOTENCY_DAYS must be a whole number of days >= 1, got {days_text!r}")
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(
            routing_table=routing_table,
            accepted_suffixes=suffixes or DEFAULT_SUFFIXES,
            head_object=head in _TRUE,
            idempotency_table=env.get("IDEMPOTENCY_TABLE", "").strip() or None,
            idempotency_days=int(days_text),
            function_region=region,
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
            service=env.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE,
        )

    @property
    def idempotency_seconds(self) -> int:
        return self.idempotency_days * 86400


def env_snapshot(environ: Mapping[str, str] | None = None) -> tuple[str | None, ...]:
    """The values the settings depend on, as a hashable key (Lambda's environment never changes)."""
    env = os.environ if environ is None else environ
    return tuple(env.get(name) for name in ENV_NAMES)
