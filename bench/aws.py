"""The benchmark's AWS side: the loopback S3 stand-in (harness/s3_standin.py: moto whose ranged GETs read only their
range; resources as the environment's config creates them: ``make bench`` uses prod's), a staging bucket holding the
generated bags, and the region's work queue the messages go to.

    with bench_aws(scratch) as aws:
        staged = aws.stage(bag)
        aws.send(staged)                       # a RestoredWork v1 message, as the Lambda sends it
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from boto3.s3.transfer import TransferConfig

from config.loader import load_environment
from contract.keys import staging_key_for_rid
from contract.restored_work import RestoredWork
from harness.bags import StreamedBag
from harness.moto_env import LocalAws, local_aws

__all__ = ["BenchAws", "StagedBag", "bench_aws"]


@dataclass(frozen=True)
class StagedBag:
    """A generated bag uploaded to the staging bucket under its staging key."""

    bag: StreamedBag
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None


@dataclass(frozen=True)
class BenchAws:
    local: LocalAws
    region: str
    bucket: str
    collection: str
    #: the environment file the finisher reads (``BDRC_ENV_FILE``)
    env_file: Path

    @property
    def endpoint_url(self) -> str:
        return self.local.endpoint_url

    @property
    def queue_url(self) -> str:
        return self.local.queue_url(self.region)

    def s3(self) -> object:
        return self.local.client("s3", self.region)

    def stage(self, bag: StreamedBag) -> StagedBag:
        """Upload ``bag`` in one PUT (STANDARD: already readable, as a completed restore is)."""
        key = staging_key_for_rid(bag.work_rid)
        s3 = self.local.client("s3", self.region)
        s3.upload_file(str(bag.path), self.bucket, key, Config=TransferConfig(multipart_threshold=2**62))
        head = s3.head_object(Bucket=self.bucket, Key=key)
        return StagedBag(bag, self.bucket, key, int(head["ContentLength"]), head["ETag"], head.get("VersionId"))

    def send(self, staged: StagedBag) -> None:
        """Put the RestoredWork message of ``staged`` on the region's work queue."""
        message = RestoredWork.build(
            collection=self.collection, bucket=staged.bucket, key=staged.key, region=self.region, size=staged.size,
            etag=staged.etag, version_id=staged.version_id, storage_class="DEEP_ARCHIVE",
            event_time=datetime.now(UTC), source_event_id=str(uuid.uuid4()),
        )
        self.local.client("sqs", self.region).send_message(QueueUrl=self.queue_url, MessageBody=message.to_body())

    def queue_depth(self) -> int:
        """Visible + in flight + delayed messages of the work queue (0: every message was deleted)."""
        return self.local.queue_depth(self.queue_url, self.region)

    def purge(self, deadline_s: float = 90) -> None:
        """Empty the work queue (in-flight messages of a failed run too); SQS allows one purge a minute."""
        sqs = self.local.client("sqs", self.region)
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                sqs.purge_queue(QueueUrl=self.queue_url)
                return
            except sqs.exceptions.PurgeQueueInProgress:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        return self.local.subprocess_env(**extra)


@contextmanager
def bench_aws(scratch: Path, environment_name: str = "dev") -> Iterator[BenchAws]:
    """A moto server in a child process (its GETs do not share our GIL) with one region of ``environment_name``.

    One region, so the finisher polls one queue (with two, a message can wait for the other queue's long poll).
    The reduced environment is written to ``scratch/bench-env.yaml`` for the finisher (``BDRC_ENV_FILE``).
    """
    full = load_environment(environment_name)
    region = next((r for r in full.regions if r.region == "us-east-1"), full.regions[0])
    environment = full.model_copy(update={"regions": [region]})
    env_file = scratch / "bench-env.yaml"
    env_file.write_text(yaml.safe_dump(environment.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    bucket = region.buckets[0]
    with local_aws(environment, in_process=False, config_dir=scratch / "aws-config") as local:
        yield BenchAws(local=local, region=region.region, bucket=bucket.name, collection=bucket.collection,
                       env_file=env_file)
