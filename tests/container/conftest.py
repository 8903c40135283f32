"""The finisher's image run for real: a moto server on the host's loopback, the container on the host's network.

The image is ``$BDRC_FINISHER_IMAGE`` (``make test`` builds it and sets it; default ``bdrc-finisher:dev``, what
``make image`` builds) on the daemon at ``$DOCKER_HOST`` (``make`` starts one: ``bin/dev-dockerd.sh``). Every
container runs with a read-only root filesystem, as the image's non-root user, with ``/archive``, ``/staging`` and
``/state`` bind-mounted from host folders owned by that user.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from contract import RestoredWork
from harness.bags import make_bdrc_bag_zip
from tests.integration.worker_support import BUCKET, DLQ, QUEUE, REGION, environment, stage_object

IMAGE = os.environ.get("BDRC_FINISHER_IMAGE", "bdrc-finisher:dev")
OUR_DAEMON = "unix:///run/bdrc-restore-docker/docker.sock"
RID = "W1NLM4700"
MOUNTS = ("archive", "staging", "state")


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``docker …`` on the daemon the Makefile uses (``$DOCKER_HOST``, else ours when its socket exists)."""
    env = dict(os.environ)
    if "DOCKER_HOST" not in env and Path(OUR_DAEMON.removeprefix("unix://")).exists():
        env["DOCKER_HOST"] = OUR_DAEMON
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


@pytest.fixture(scope="session")
def image_user() -> tuple[int, int]:
    """The image's ``USER`` (the UID:GID given at build time), checked to be non-root."""
    found = docker("image", "inspect", "--format", "{{.Config.User}}", IMAGE, check=False)
    assert found.returncode == 0, (
        f"no image {IMAGE} on the daemon ({found.stderr.strip()}): `make image` builds it (make test does too)")
    uid, gid = (int(part) for part in found.stdout.strip().split(":"))
    assert uid != 0 and gid != 0, f"{IMAGE} runs as {uid}:{gid}"
    return uid, gid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Site:
    """One archive host: its moto endpoint, host folders for the mounts, and the containers started on it."""

    root: Path
    endpoint: str
    uid: int
    gid: int
    containers: list[str] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def s3(self, region: str) -> Any:  # what stage_object needs of AwsClients
        return self.client("s3")

    def host_dir(self, name: str) -> Path:
        return self.root / name

    def send_work(self, rid: str = RID) -> RestoredWork:
        work = stage_object(self, make_bdrc_bag_zip(self.root / "bags", rids=[rid]), rid)  # type: ignore[arg-type]
        sqs = self.client("sqs")
        sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"], MessageBody=work.to_body())
        return work

    def depth(self, queue: str = QUEUE) -> dict[str, int]:
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return {"visible": int(attributes["ApproximateNumberOfMessages"]),
                "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"])}

    def docker_args(self, *, volumes: dict[str, str] | None = None, extra_volumes: dict[str, str] | None = None,
                    **env: str) -> list[str]:
        """``docker run`` options: read-only root, host network (moto on loopback), the mounts, the env file.

        ``volumes`` (host folder → container path) replace the three default mounts; ``extra_volumes`` are
        mounted read-only beside them.
        """
        name = f"bdrc-finisher-test-{uuid.uuid4().hex[:10]}"
        self.containers.append(name)
        mounts = volumes if volumes is not None else {str(self.host_dir(m)): f"/{m}" for m in MOUNTS}
        mounts |= {host: f"{target}:ro" for host, target in (extra_volumes or {}).items()}
        args = ["--name", name, "--init", "--network", "host", "--read-only", "--tmpfs", "/tmp",
                "-v", f"{self.root / 'config'}:/config:ro"]
        for host, target in mounts.items():
            args += ["-v", f"{host}:{target}"]
        environ = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED":
                   "true", "BDRC_ENV_FILE": "/config/env.yaml", "FINISHER_WAIT_TIME_SECONDS": "1",
                   "FINISHER_VISIBILITY_TIMEOUT": "10", "FINISHER_MIN_FREE_BYTES": "0",
                   "FINISHER_LEASE_BUSY_DELAY": "1", "FINISHER_DRAIN_IDLE_LIMIT": "5", **env}
        for key, value in environ.items():
            args += ["-e", f"{key}={value}"]
        return [*args, IMAGE]

    def run(self, *command: str, timeout: float = 120, volumes: dict[str, str] | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
        """``docker run --rm`` the image with ``command`` to its end."""
        return docker("run", "--rm", *self.docker_args(volumes=volumes, **env), *command, timeout=timeout,
                      check=False)

    def start(self, *command: str, extra_volumes: dict[str, str] | None = None, **env: str) -> str:
        """``docker run -d``: the container's name."""
        args = self.docker_args(extra_volumes=extra_volumes, **env)
        docker("run", "-d", *args, *command)
        return args[1]


def log_events(output: str) -> list[dict[str, Any]]:
    """The finisher's JSON log lines (one event each)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture
def site(tmp_path: Path, image_user: tuple[int, int]) -> Iterator[Site]:
    """A moto server with the environment's bucket and queues; mount folders owned by the image's user."""
    uid, gid = image_user
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    site = Site(root=tmp_path, endpoint=f"http://127.0.0.1:{port}", uid=uid, gid=gid)
    s3 = site.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    sqs = site.client("sqs")
    sqs.create_queue(QueueName=DLQ)
    sqs.create_queue(QueueName=QUEUE)
    config = environment(tmp_path / "unused").model_dump(mode="json")
    config["finisher"].update(archive_root="/archive", staging_dir="/staging", state_dir="/state")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "env.yaml").write_text(yaml.safe_dump(config))
    for name in MOUNTS:
        site.host_dir(name).mkdir()
        os.chown(site.host_dir(name), uid, gid)
    try:
        yield site
    finally:
        for name in site.containers:
            docker("rm", "-f", name, check=False)
        moto.stop()
