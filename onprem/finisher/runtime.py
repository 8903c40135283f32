"""Wiring: AWS clients, the ledger, the regional queues, metrics and stages assembled from the settings."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from onprem.finisher.ledger import Ledger
from onprem.finisher.metrics import CloudWatchMetrics, Metrics, NullMetrics
from onprem.finisher.progress import Progress, make_progress
from onprem.finisher.queue import WorkQueue
from onprem.finisher.settings import Settings
from onprem.finisher.stages import Stages, TokenRegistry, load_stages
from onprem.finisher.work_runner import WorkRunner
from onprem.finisher.worker import Worker

logger = logging.getLogger(__name__)

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


def owner_id() -> str:
    """Who holds a lease: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def open_ledger(settings: Settings) -> Ledger:
    """The ledger of ``settings``; LedgerUnavailable when its database cannot be opened."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return Ledger(settings.ledger_url, lock_timeout_s=settings.ledger_lock_timeout)


def work_queues(settings: Settings, clients: AwsClients, regions: list[str] | None = None) -> list[WorkQueue]:
    return [WorkQueue(clients.client("sqs", r.region), r.region, r.queue_name, r.dlq_name)
            for r in settings.environment.regions if not regions or r.region in regions]


def make_metrics(settings: Settings, clients: AwsClients) -> Metrics:
    if not settings.metrics:
        return NullMetrics()
    region = settings.environment.monitoring.dashboard_region
    return CloudWatchMetrics(clients.client("cloudwatch", region), settings.environment.monitoring.namespace)


def default_progress(label: str, work_rid: str) -> Progress:
    return make_progress(label, work_rid)


def build_worker(settings: Settings, *, clients: AwsClients | None = None, ledger: Ledger | None = None,
                 stages: Stages | None = None, metrics: Metrics | None = None,
                 progress_for: Callable[[str, str], Progress] = default_progress,
                 owner: str | None = None) -> Worker:
    """A ready worker; tests pass their own stages, metrics or ledger."""
    settings.ensure_dirs()
    if not settings.archive_root.is_dir():  # each sync waits for it (ArchiveUnavailable): say so once, at the start
        logger.error("archive root %s does not exist (not mounted?): works are retried until it is there",
                     settings.archive_root)
    clients = clients or AwsClients(settings.endpoint_url)
    tokens = TokenRegistry()
    ledger = ledger or open_ledger(settings)
    ledger.check_writable()  # a read-only or locked ledger stops the start, not every message
    runner = WorkRunner(
        settings=settings, ledger=ledger,
        stages=stages or load_stages(settings, clients.s3), metrics=metrics or make_metrics(settings, clients),
        s3_client_for=clients.s3, progress_for=progress_for, owner=owner or owner_id(), tokens=tokens)
    return Worker(settings, work_queues(settings, clients), runner, tokens)
