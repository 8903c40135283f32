"""The AWS clients of one finisher: one boto3 client per (service, region), made on first use."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_RETRIES = Config(retries={"max_attempts": 5, "mode": "adaptive"}, max_pool_connections=32)


class AwsClients:
    """One boto3 client per (service, region), created on first use; thread-safe."""

    def __init__(self, endpoint_url: str | None = None, session: Any = None) -> None:
        self.endpoint_url = endpoint_url
        self._session = session or boto3.session.Session()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            if (service, region) not in self._clients:
                self._clients[(service, region)] = self._session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url, config=_RETRIES)
            return self._clients[(service, region)]

    def s3(self, region: str) -> Any:
        return self.client("s3", region)
