"""Fixtures of the S3 stage tests: one loopback moto server per module, a client on it, a fresh bucket per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.moto_endpoint import moto_endpoint, s3_client


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    return s3_client(endpoint, monkeypatch)


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    """An unversioned staging bucket (a module needing versions defines its own)."""
    name = f"staging-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
