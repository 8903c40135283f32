"""The AWS clients of one finisher: one boto3 client per (service, region), made on first use."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_RETRIES = Config(retries={"max_attempts": 5, "mode": "adaptive"}, max_pool_connections=32)
#: the metrics thread's client: a CloudWatch that does not answer costs one round seconds, not minutes (its datums
#: are counted as lost; a work never waits for it)
_METRICS = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=10)


class AwsClients:
    """One boto3 client per (service, region), created on first use; thread-safe."""

    def __init__(self, endpoint_url: str | None = None, session: Any = None) -> None:
        self.endpoint_url = endpoint_url
        self._session = session or boto3.session.Session()
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str, *, purpose: str = "work") -> Any:
        """The client of ``service`` in ``region``; ``purpose="metrics"``: short timeouts, few retries."""
        with self._lock:
            if (service, region, purpose) not in self._clients:
                self._clients[(service, region, purpose)] = self._session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url,
                    config=_METRICS if purpose == "metrics" else _RETRIES)
            return self._clients[(service, region, purpose)]

    def metrics_client(self, region: str) -> Any:
        """CloudWatch for the metrics thread."""
        return self.client("cloudwatch", region, purpose="metrics")

    def s3(self, region: str) -> Any:
        return self.client("s3", region)
