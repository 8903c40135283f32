"""Wiring: AWS clients, the ledger, the regional queues, metrics and stages assembled from the settings."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from onprem.finisher.ledger.store import Ledger
from onprem.finisher.metrics import Metrics, NullMetrics
from onprem.finisher.metrics_batch import BatchedMetrics
from onprem.finisher.progress import Progress, make_progress
from onprem.finisher.queue.sqs import WorkQueue
from onprem.finisher.work.backlog import BacklogIndex
from onprem.finisher.work.cancel import TokenRegistry
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.expiry import ExpiryGauge
from onprem.finisher.work.metered import RunMetrics, metered_progress
from onprem.finisher.work.runner import WorkRunner
from onprem.finisher.work.settings import Settings
from onprem.finisher.work.stages import Stages
from onprem.finisher.work.worker import Worker

logger = logging.getLogger(__name__)

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
    """CloudWatch in the dashboard's region, batched on a thread (``settings.metrics``: on by default without an
    endpoint, i.e. against AWS), else nothing."""
    if not settings.metrics:
        return NullMetrics()
    region = settings.environment.monitoring.dashboard_region
    return BatchedMetrics(clients.metrics_client(region), settings.environment.monitoring.namespace,
                          interval_s=settings.metrics_interval, capacity=settings.metrics_buffer)


def default_progress(label: str, work_rid: str) -> Progress:
    return make_progress(label, work_rid)


def build_worker(settings: Settings, stages: Stages, *, clients: AwsClients | None = None,
                 ledger: Ledger | None = None, metrics: Metrics | None = None,
                 progress_for: Callable[[str, str], Progress] = default_progress,
                 owner: str | None = None) -> Worker:
    """A ready worker on ``stages`` (the real ones: ``wiring.real_stages``); tests pass their own, or metrics."""
    settings.ensure_dirs()
    if not settings.archive_root.is_dir():  # each sync waits for it (ArchiveUnavailable): say so once, at the start
        logger.error("archive root %s does not exist (not mounted?): works are retried until it is there",
                     settings.archive_root)
    clients = clients or AwsClients(settings.endpoint_url)
    tokens = TokenRegistry()
    ledger = ledger or open_ledger(settings)
    ledger.check_writable()  # a read-only or locked ledger stops the start, not every message
    metrics = metrics or make_metrics(settings, clients)
    expiry = ExpiryGauge(ledger, metrics, settings.restore.expiry_metric_interval)
    runner = WorkRunner(
        settings=settings, ledger=ledger, stages=stages, metrics=metrics,
        s3_client_for=clients.s3, progress_for=metered_progress(progress_for, metrics), owner=owner or owner_id(),
        tokens=tokens, expiry=expiry)
    backlog = BacklogIndex(settings, ledger, clients.s3,
                           hold=settings.worker.concurrency + settings.worker.backlog_lookahead)
    # the metrics thread lives as long as the run: heartbeat, idle gauges, the last send at the stop
    return Worker(settings, work_queues(settings, clients), runner, tokens, backlog,
                  observer=RunMetrics(metrics, expiry))
