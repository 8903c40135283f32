"""Fixtures of the reliability suite: a loopback moto server per module, a versioned staging bucket, small bags."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from harness.moto_env import FAKE_CREDENTIALS
from harness.moto_server import MotoServer
from tests.reliability.harness import Bench, trial_bench

REGION = "us-east-1"
SMALL_DISK_BYTES = 2 * 2**20


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = MotoServer(in_process=True)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def backend_bench(tmp_path: Path, ledger_url: str) -> Iterator[Bench]:
    """A trial's world whose finisher keeps its ledger on the test's backend (the id's ``[sqlite]`` or
    ``[postgresql]``): for the trials where the backend matters (leases, claims, a restart)."""
    with trial_bench(tmp_path, ledger_url) as running:
        yield running


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(moto_endpoint: str, aws_credentials: None):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"staging-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root may mount one here); where mounting is refused, a plain folder (``is_mount()`` False)
    and the test injects a write limit instead."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_BYTES}", "tmpfs", str(folder)],
                                 capture_output=True, check=False).returncode == 0
    except OSError:
        mounted = False
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)
