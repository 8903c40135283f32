"""EMF metrics: one document per record, written at once (so it is out before any raise).

Every document counts in the dimension set ``[service]`` (what the dashboard graphs) and, when the work's
bucket is routed, also in ``[service, collection, region]``; the work RID and object travel as metadata.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

#: record outcome → metric name (the first four are on the dashboard)
OUTCOME_METRICS = {
    "routed": "RestoresRouted",
    "ignored": "RestoresIgnored",
    "unroutable": "RestoresUnroutable",
    "duplicate": "DuplicatesSuppressed",
    "invalid": "RestoresInvalid",
    "retry": "RestoresNotYetRestored",
    "failed": "RestoresFailed",
}


def emit_outcome(namespace: str, service: str, outcome: str, *, collection: str | None = None,
                 region: str | None = None, **metadata: Any) -> None:
    """Print one EMF document counting ``outcome`` once."""
    document = AmazonCloudWatchEMFProvider(namespace=namespace, service=service)
    document.add_metric(name=OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=1)
    if collection and region:
        document.add_dimensions(service=service, collection=collection, region=region)
    for key, value in metadata.items():
        if value is not None:
            document.add_metadata(key=key, value=value)
    document.flush_metrics()
