"""The typed environment model shared by the CDK app, the Lambda's routing table and the finisher."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RestoreTier = Literal["Bulk", "Standard"]
_AWS_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_SQS_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BucketConfig(_Model):
    """A staging bucket (imported, never created) and the collection it holds."""

    name: str = Field(min_length=3, max_length=63)
    collection: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    #: the KMS key of the bucket's default SSE-KMS encryption: the finisher gets kms:Decrypt on it through S3
    kms_key_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")


class RegionConfig(_Model):
    """One region with staging buckets: its work queue and DLQ."""

    region: str
    queue_name: str
    dlq_name: str
    buckets: list[BucketConfig] = Field(min_length=1)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _AWS_REGION_RE.match(value):
            raise ValueError(f"{value!r} is not an AWS region name")
        return value

    @field_validator("queue_name", "dlq_name")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not _SQS_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid SQS queue name")
        return value


class RestoreDefaults(_Model):
    tier: RestoreTier = "Bulk"
    days: int = Field(default=10, ge=1, le=30)


class LambdaConfig(_Model):
    """What the notify_restore Lambda accepts and how it deduplicates."""

    bag_suffixes: list[str] = Field(default_factory=lambda: [".bag.zip"], min_length=1)
    accept_plain_zip: bool = False
    head_object: bool = False
    idempotency_days: int = Field(default=30, ge=1)
    #: days the EventBridge archive keeps restore completions for replay through the notify rule
    event_archive_days: int = Field(default=30, ge=1)
    memory_mb: int = Field(default=256, ge=128)
    timeout_s: int = Field(default=30, ge=3, le=900)
    log_level: str = "INFO"

    def accepted_suffixes(self) -> tuple[str, ...]:
        return (*self.bag_suffixes, ".zip") if self.accept_plain_zip else tuple(self.bag_suffixes)


class QueuePolicy(_Model):
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    visibility_timeout_s: int = Field(default=900, ge=30, le=43200)
    #: below the DLQ's 14 days (a dead-lettered message keeps its enqueue time), above the restore window
    retention_days: int = Field(default=12, ge=1, le=14)


class RolesAnywhereConfig(_Model):
    """IAM Roles Anywhere for the finisher host: a trust anchor made from this CA, the role trusting it for
    certificates with this subject CN, a profile (docs/deploy.md)."""

    #: the CA certificate (PEM), as a file (relative paths: from the repository root) or inline
    ca_certificate_file: Path | None = None
    ca_certificate_pem: str | None = None
    #: the finisher host certificate's subject CN (aws:PrincipalTag/x509Subject/CN)
    certificate_cn: str = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_certificate(self) -> RolesAnywhereConfig:
        if (self.ca_certificate_file is None) == (self.ca_certificate_pem is None):
            raise ValueError("roles_anywhere: give exactly one of ca_certificate_file and ca_certificate_pem")
        return self


class FinisherConfig(_Model):
    """On-prem paths and behaviour; every field can be overridden by the finisher's settings (file + env)."""

    archive_root: Path
    staging_dir: Path
    state_dir: Path
    web_destination: str | None = None
    concurrency: int = Field(default=2, ge=1, le=64)
    iam_principal: Literal["role", "user"] = "role"
    trusted_role_arn: str | None = None
    #: when set, the finisher role trusts IAM Roles Anywhere through this trust anchor (docs/deploy.md)
    roles_anywhere_trust_anchor_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:rolesanywhere:")
    #: when set, the access stack creates the trust anchor and profile itself (prod; docs/deploy.md)
    roles_anywhere: RolesAnywhereConfig | None = None

    @model_validator(mode="after")
    def _one_roles_anywhere(self) -> FinisherConfig:
        if self.roles_anywhere and self.roles_anywhere_trust_anchor_arn:
            raise ValueError("finisher: roles_anywhere (a stack-made trust anchor) and "
                             "roles_anywhere_trust_anchor_arn (an existing one) exclude each other")
        return self


class MonitoringConfig(_Model):
    namespace: str = "BDRC/Restore"
    alarm_email: str | None = None
    dashboard_region: str = "us-east-1"
    #: an alarm fires when the oldest queued work is older than this fraction of the restore window
    oldest_message_fraction_of_restore: float = Field(default=0.5, gt=0, le=1)
    #: an alarm fires when the finisher's HoursToEarliestRestoreExpiry (the earliest restored copy of a work not yet
    #: synced) is below this; it lives in the regional stack of ``dashboard_region``, where the finisher publishes
    restore_expiry_alarm_hours: float = Field(default=24, gt=0)


class EnvironmentConfig(_Model):
    """Everything that differs between environments: selected with ``-c env=…`` / ``BDRC_ENV``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    resource_prefix: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    regions: list[RegionConfig] = Field(min_length=1)
    restore: RestoreDefaults = RestoreDefaults()
    queues: QueuePolicy = QueuePolicy()
    notify: LambdaConfig = LambdaConfig()
    finisher: FinisherConfig
    monitoring: MonitoringConfig = MonitoringConfig()
    #: names this environment deliberately shares with another one (e.g. a read-only prod bucket in dev)
    shared_with_other_environments: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> EnvironmentConfig:
        regions = [r.region for r in self.regions]
        if len(set(regions)) != len(regions):
            raise ValueError(f"environment {self.name}: a region is listed twice: {regions}")
        buckets = [b.name for r in self.regions for b in r.buckets]
        if len(set(buckets)) != len(buckets):
            raise ValueError(f"environment {self.name}: a bucket is listed twice: {buckets}")
        queues = [n for r in self.regions for n in (r.queue_name, r.dlq_name)]
        if len(set(queues)) != len(queues):
            raise ValueError(f"environment {self.name}: a queue name is used twice: {queues}")
        return self

    def region_of_bucket(self, bucket: str) -> RegionConfig:
        for region in self.regions:
            if any(b.name == bucket for b in region.buckets):
                return region
        raise KeyError(f"bucket {bucket!r} is not a staging bucket of environment {self.name}")

    def bucket(self, name: str) -> BucketConfig:
        region = self.region_of_bucket(name)
        return next(b for b in region.buckets if b.name == name)

    def buckets_of_collection(self, collection: str) -> list[tuple[RegionConfig, BucketConfig]]:
        return [(r, b) for r in self.regions for b in r.buckets if b.collection == collection]

    # Names of the per-region resources the CDK app creates and the demo mirrors on moto.
    def idempotency_table_name(self, region: str) -> str:
        return f"{self.resource_prefix}-{region}-notify-idempotency"

    def failure_queue_name(self, region: str) -> str:
        """Where the Lambda's async on-failure destination and the rule's target DLQ put what it cannot route."""
        return f"{self.resource_prefix}-{region}-notify-failures"

    def notify_function_name(self, region: str) -> str:
        return f"{self.resource_prefix}-{region}-notify-restore"

    def resource_names(self) -> set[str]:
        """Every AWS name this environment points at: buckets and queues."""
        names = {b.name for r in self.regions for b in r.buckets}
        names |= {n for r in self.regions for n in (r.queue_name, r.dlq_name)}
        names |= {self.idempotency_table_name(r.region) for r in self.regions}
        names |= {self.failure_queue_name(r.region) for r in self.regions}
        return names

    @property
    def oldest_message_alarm_seconds(self) -> int:
        """A queued work older than this risks outliving its restored copy."""
        return int(self.restore.days * 86400 * self.monitoring.oldest_message_fraction_of_restore)
