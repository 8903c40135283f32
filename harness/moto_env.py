"""A loopback moto server holding one environment's AWS resources: ``with local_aws(environment) as aws: ...``.

Inside the block every boto3 client of this process (and of any subprocess started with ``aws.subprocess_env()``)
talks to the server: ``AWS_ENDPOINT_URL`` points at it, credentials are fake and the user's AWS config files and
profiles are hidden. Anything that would still reach a non-loopback endpoint raises ``NonLoopbackEndpoint``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from config.model import EnvironmentConfig
from config.routing import RoutingTable, routing_table_for
from harness.events import restore_completed_pattern
from harness.moto_server import (
    MotoServer,
    NonLoopbackEndpoint,
    ensure_loopback,
    is_loopback_url,
    refuse_configured_endpoints,
)

logger = logging.getLogger(__name__)

#: the services the pipeline uses; each client's resolved endpoint is checked to be loopback
SERVICES = ("s3", "sqs", "dynamodb", "events")
MOTO_ACCOUNT = "123456789012"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}
#: variables that would make boto3 use the user's identity or ignore our endpoint
HIDDEN_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")
EVENT_QUEUE_SUFFIX = "demo-restore-events"
MAX_RETENTION_S = 14 * 86400
FINISHER_PREFIX = "FINISHER_"

__all__ = ["LocalAws", "MotoServer", "NonLoopbackEndpoint", "ensure_loopback", "is_loopback_url", "local_aws",
           "provision_environment", "refuse_configured_endpoints"]


@dataclass(frozen=True)
class LocalAws:
    """The running server and the names/URLs of the environment's resources on it."""

    environment: EnvironmentConfig
    endpoint_url: str
    aws_environ: Mapping[str, str]
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)
    _session: Any = field(default_factory=boto3.session.Session, compare=False, repr=False)

    def client(self, service: str, region: str | None = None) -> Any:
        """A (cached) boto3 client on the server; raises NonLoopbackEndpoint if it would resolve elsewhere."""
        cache_key = (service, region or self.default_region)
        with self._lock:
            if cache_key not in self._clients:
                client = self._session.client(service, region_name=cache_key[1])
                ensure_loopback(client.meta.endpoint_url, f"the {service} endpoint")
                self._clients[cache_key] = client
            return self._clients[cache_key]

    @property
    def default_region(self) -> str:
        return self.environment.regions[0].region

    @property
    def regions(self) -> list[str]:
        return [r.region for r in self.environment.regions]

    def _queue_url(self, region: str, name: str) -> str:
        return str(self.client("sqs", region).get_queue_url(QueueName=name)["QueueUrl"])

    def queue_url(self, region: str) -> str:
        """The region's work queue (what the Lambda sends to and the finisher polls)."""
        return self._queue_url(region, self._region(region).queue_name)

    def dlq_url(self, region: str) -> str:
        return self._queue_url(region, self._region(region).dlq_name)

    def failure_queue_url(self, region: str) -> str:
        return self._queue_url(region, self.environment.failure_queue_name(region))

    def event_queue_url(self, region: str) -> str:
        """Stands in for the Lambda target of the region's EventBridge rule (moto cannot run Python Lambdas)."""
        return self._queue_url(region, event_queue_name(self.environment, region))

    def routing_table(self, region: str | None = None) -> RoutingTable:
        """The Lambda's routing table, as the CDK app builds it (only ``region``'s buckets when given)."""
        table = routing_table_for(self.environment, lambda r, _name: self.queue_url(r))
        if region is None:
            return table
        return RoutingTable({b: route for b, route in table.root.items() if route.region == region})

    def queue_depth(self, url: str, region: str) -> int:
        """Visible + in-flight + delayed messages."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        attrs = self.client("sqs", region).get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attrs.get(n, 0)) for n in names)

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """``os.environ`` with the AWS variables pointing at the server, plus ``extra``.

        The caller's own ``FINISHER_*`` variables are left out (a settings file or ledger URL of a real finisher
        must never leak into a local run); pass the ones wanted in ``extra``.
        """
        environ = {k: v for k, v in os.environ.items()
                   if k not in HIDDEN_VARIABLES and not k.startswith(FINISHER_PREFIX)}
        environ.update(self.aws_environ)
        environ.update(extra)
        refuse_configured_endpoints(environ)
        return environ

    def _region(self, region: str) -> Any:
        return next(r for r in self.environment.regions if r.region == region)


def event_queue_name(environment: EnvironmentConfig, region: str) -> str:
    return f"{environment.resource_prefix}-{region}-{EVENT_QUEUE_SUFFIX}"


@contextmanager
def patched_environ(updates: Mapping[str, str], remove: tuple[str, ...] = ()) -> Iterator[None]:
    """Set ``updates`` and unset ``remove`` in os.environ for the block; restore everything afterwards."""
    saved = dict(os.environ)
    try:
        for name in remove:
            os.environ.pop(name, None)
        os.environ.update(updates)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def local_aws(
    environment: EnvironmentConfig, *, endpoint_url: str | None = None, provision: bool = True,
    in_process: bool = True, config_dir: Path | None = None,
) -> Iterator[LocalAws]:
    """Start (or, with ``endpoint_url``, attach to) a loopback moto server and point every client at it.

    ``provision`` creates the environment's resources (see :func:`provision`). ``config_dir`` receives the empty
    AWS config/credentials files that hide the user's own (default: os.devnull).
    """
    refuse_configured_endpoints(os.environ)
    if endpoint_url is not None:
        ensure_loopback(endpoint_url, "the endpoint")
    server = None if endpoint_url else MotoServer(in_process=in_process)
    try:
        url = endpoint_url or server.start()  # type: ignore[union-attr]
        aws_environ = _aws_environ(url, environment.regions[0].region, config_dir)
        with patched_environ(aws_environ, remove=HIDDEN_VARIABLES):
            aws = LocalAws(environment=environment, endpoint_url=url, aws_environ=aws_environ)
            for service in SERVICES:
                aws.client(service)  # refuses to start if anything still resolves off this machine
            if provision:
                provision_environment(aws)
            yield aws
    finally:
        if server is not None:
            server.stop()


def _aws_environ(url: str, region: str, config_dir: Path | None) -> dict[str, str]:
    if config_dir is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        for name in ("config", "credentials"):
            (config_dir / name).touch()
    empty = lambda name: str(config_dir / name) if config_dir else os.devnull  # noqa: E731
    return {
        "AWS_ENDPOINT_URL": url,
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": empty("config"),
        "AWS_SHARED_CREDENTIALS_FILE": empty("credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def provision_environment(aws: LocalAws) -> None:
    """Create what the CDK app creates (queues, DLQs, failure queues, idempotency tables) and the staging buckets
    it imports (versioned), plus one EventBridge rule per region whose target is the demo's event queue."""
    environment = aws.environment
    policy = environment.queues
    for region in environment.regions:
        s3 = aws.client("s3", region.region)
        for bucket in region.buckets:
            extra = {} if region.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": region.region}}
            s3.create_bucket(Bucket=bucket.name, **extra)
            s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
            # EventBridge notifications stay off: moto's own restore events differ from AWS's (``eTag``, no
            # restore-expiry-time); the demo publishes the exact AWS shape itself (see events.py)
        sqs = aws.client("sqs", region.region)
        # as infra/cdk/constructs/work_queues.py: SSE-SQS, DLQ and failure queue keep messages 14 days
        encrypted = {"SqsManagedSseEnabled": "true"}
        longest = {**encrypted, "MessageRetentionPeriod": str(MAX_RETENTION_S)}
        dlq_url = sqs.create_queue(QueueName=region.dlq_name, Attributes=longest)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": policy.max_receive_count}
        sqs.create_queue(QueueName=region.queue_name, Attributes={
            **encrypted, "MessageRetentionPeriod": str(policy.retention_days * 86400),
            "VisibilityTimeout": str(policy.visibility_timeout_s), "RedrivePolicy": json.dumps(redrive)})
        sqs.create_queue(QueueName=environment.failure_queue_name(region.region), Attributes=longest)
        event_url = sqs.create_queue(QueueName=event_queue_name(environment, region.region))["QueueUrl"]
        _create_idempotency_table(aws, region.region)
        _create_restore_rule(aws, region.region, [b.name for b in region.buckets], event_url)
    logger.debug("provisioned %s on %s", environment.name, aws.endpoint_url)


def _create_idempotency_table(aws: LocalAws, region: str) -> None:
    """Powertools' DynamoDB persistence layer: partition key ``id`` (S), TTL on ``expiration``."""
    dynamodb = aws.client("dynamodb", region)
    name = aws.environment.idempotency_table_name(region)
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True,
                                                                         "AttributeName": "expiration"})


def _create_restore_rule(aws: LocalAws, region: str, buckets: list[str], target_queue_url: str) -> None:
    sqs, events = aws.client("sqs", region), aws.client("events", region)
    arn = sqs.get_queue_attributes(QueueUrl=target_queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = f"{aws.environment.resource_prefix}-{region}-restore-completed"
    pattern = restore_completed_pattern(buckets, aws.environment.notify.accepted_suffixes())
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=name, Targets=[{"Id": "notify-restore", "Arn": arn}])
