"""AWS clients, created on first use and cached per (service, region): the function's only mutable state.

boto3 is imported on first use; every client honours ``AWS_ENDPOINT_URL`` (the demo points it at a moto server).
"""

from __future__ import annotations

from typing import Any

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10


class AwsClients:
    """One boto3 session, one client per service and region (the HEAD must use the bucket's region)."""

    def __init__(self) -> None:
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str) -> Any:
        cached = self._clients.get((service, region))
        if cached is not None:
            return cached
        import boto3  # lazy: only when the first client is needed
        from botocore.config import Config

        if self._session is None:
            self._session = boto3.session.Session()
        config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                        retries={"mode": "standard", "max_attempts": 3})
        created = self._session.client(service, region_name=region, config=config)
        self._clients[(service, region)] = created
        return created

    def sqs(self, region: str) -> Any:
        return self.client("sqs", region)

    def s3(self, region: str) -> Any:
        return self.client("s3", region)

    def dynamodb(self, region: str) -> Any:
        return self.client("dynamodb", region)
