"""A loopback moto server holding one environment's AWS resources: ``with local_aws(environment) as aws: ...``.

Inside the block every boto3 client of this process (and of any subprocess started with ``aws.subprocess_env()``)
talks to the server: ``AWS_ENDPOINT_URL`` points at it, credentials are fake and the user's AWS config files and
profiles are hidden. Anything that would still reach a non-loopback endpoint raises ``NonLoopbackEndpoint``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3

from config.model import EnvironmentConfig
from config.routing import RoutingTable, routing_table_for
from onprem.finisher.demo.events import restore_completed_pattern

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


class NonLoopbackEndpoint(RuntimeError):
    """The demo or a test would talk to an endpoint that is not on this machine (e.g. real AWS)."""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_loopback(url: str, what: str) -> str:
    """Return ``url`` when its host is loopback, else raise NonLoopbackEndpoint naming ``what``."""
    if not is_loopback_url(url):
        raise NonLoopbackEndpoint(
            f"{what} is {url!r}, which is not a loopback address: the demo only runs against a local moto "
            "server and never touches real AWS"
        )
    return url


def refuse_configured_endpoints(environ: Mapping[str, str]) -> None:
    """Refuse any ``*ENDPOINT_URL*`` variable (``AWS_ENDPOINT_URL_S3`` …) that points off this machine."""
    for name, value in sorted(environ.items()):
        if "ENDPOINT_URL" in name.upper() and value:
            ensure_loopback(value, f"${name}")


class MotoServer:
    """A moto server on 127.0.0.1: a thread of this process (fast) or a child process (can be killed)."""

    def __init__(self, *, in_process: bool = True, port: int = 0) -> None:
        self.in_process = in_process
        self._port = port
        self._thread_server: Any = None
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint_url = ""

    def start(self, deadline_s: float = 20.0) -> str:
        if self.in_process:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
            self._thread_server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
            self._thread_server.start()
            host, port = self._thread_server.get_host_and_port()
        else:
            host, port = "127.0.0.1", self._port or free_port()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        self.endpoint_url = f"http://{host}:{port}"
        self._wait_ready(deadline_s)
        # the in-process backends are global: start every server from an empty state
        _post(f"{self.endpoint_url}/moto-api/reset")
        return self.endpoint_url

    def _wait_ready(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=2):  # noqa: S310
                    return
            except OSError as err:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"moto server exited with {self._process.returncode}") from err
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server at {self.endpoint_url} not ready after {deadline_s}s") from err
                time.sleep(0.05)

    def stop(self) -> None:
        if self._thread_server is not None:
            self._thread_server.stop()
            self._thread_server = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str) -> None:
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - loopback moto API
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        return


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
        """``os.environ`` with the AWS variables pointing at the server, plus ``extra``."""
        environ = {k: v for k, v in os.environ.items() if k not in HIDDEN_VARIABLES}
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
        common = {"MessageRetentionPeriod": str(policy.retention_days * 86400)}
        dlq_url = sqs.create_queue(QueueName=region.dlq_name, Attributes=common)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": policy.max_receive_count}
        sqs.create_queue(QueueName=region.queue_name, Attributes={
            **common, "VisibilityTimeout": str(policy.visibility_timeout_s), "RedrivePolicy": json.dumps(redrive)})
        sqs.create_queue(QueueName=environment.failure_queue_name(region.region), Attributes=common)
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
    events.put_rule(Name=name, EventPattern=json.dumps(restore_completed_pattern(buckets)), State="ENABLED")
    events.put_targets(Rule=name, Targets=[{"Id": "notify-restore", "Arn": arn}])
