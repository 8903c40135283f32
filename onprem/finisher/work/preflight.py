"""``finisher preflight``: before ``cdk deploy``, what the deploy will change on the staging buckets and what
would fail, read-only against the configured account.

What the deploy does (``infra/cdk/constructs/restore_events.py``): each staging bucket is imported and
``enable_event_bridge_notification()`` renders CDK's bucket-notifications custom resource (``Managed: false``). On
create it reads the bucket's whole notification configuration, keeps every existing configuration and puts it back
with EventBridge on; S3 validates every destination of that put, so one stale queue, topic or function fails the
deploy. The resource runs in the bucket's configured region, and S3 sends its events to the bus of the bucket's
real region: a bucket elsewhere delivers nowhere the stack listens. Prod's queues, tables and log groups are RETAIN
with fixed names: one left by an earlier (failed or deleted) stack blocks the next create.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from config.model import BucketConfig, EnvironmentConfig, RegionConfig
from onprem.finisher.work.clients import AwsClients
from onprem.finisher.work.preflight_probe import (
    AwsRefusal,
    BucketProbe,
    log_group_exists,
    probe_bucket,
    probe_caller,
    queue_exists,
    stack_exists,
    table_exists,
)

KMS_ALGORITHMS = frozenset({"aws:kms", "aws:kms:dsse"})


class Verdict(StrEnum):
    OK = "ok"
    NOTE = "note"  # nothing fails, but the operator should know
    PROBLEM = "problem"  # the deploy would fail, or the pipeline would not work after it


@dataclass(frozen=True)
class Finding:
    """One check of one thing: ``subject`` (``bucket <name>``, ``queue <name>``, ``caller``), the check, the verdict
    and what was seen (with, for a problem, what to do)."""

    subject: str
    check: str
    verdict: Verdict
    message: str


@dataclass
class PreflightReport:
    environment: str
    caller_arn: str | None = None
    caller_account: str | None = None
    findings: list[Finding] = field(default_factory=list)
    #: what ``cdk deploy`` will change on the buckets, one line each
    changes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict is Verdict.PROBLEM]

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, subject: str, check: str, verdict: Verdict, message: str) -> None:
        self.findings.append(Finding(subject, check, verdict, message))

    def as_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "ok": self.ok, "caller_arn": self.caller_arn,
                "caller_account": self.caller_account, "changes": self.changes,
                "findings": [{**asdict(f), "verdict": str(f.verdict)} for f in self.findings]}


def regional_stack_name(environment: EnvironmentConfig, region: str) -> str:
    """The regional stack's name, as ``infra/cdk/stacks/__init__.py`` builds it."""
    return f"{environment.resource_prefix}-{region}"


def _refused(refusal: AwsRefusal) -> str:
    return f"{refusal.code}: {refusal.message}"


def check_bucket(report: PreflightReport, region: RegionConfig, bucket: BucketConfig, probe: BucketProbe) -> None:
    """The findings and the deploy's change for one probed bucket, added to ``report``."""
    subject = f"bucket {bucket.name}"
    if probe.refusal is not None:
        if probe.refusal.missing:
            report.add(subject, "exists", Verdict.PROBLEM,
                       f"does not exist in this account: the deploy imports it and its notification resource fails "
                       f"— create it in {region.region} or fix config/{report.environment}.yaml")
        else:
            report.add(subject, "exists", Verdict.PROBLEM, f"cannot be read by the caller ({_refused(probe.refusal)})")
        return
    if probe.location != region.region:
        report.add(subject, "region", Verdict.PROBLEM,
                   f"is in {probe.location}, configured in {region.region}: its restore events would go to "
                   f"{probe.location}'s bus, where no rule listens — list it under region {probe.location} in "
                   f"config/{report.environment}.yaml")
    else:
        report.add(subject, "region", Verdict.OK, f"in {region.region}")
    _check_notifications(report, subject, probe)
    _check_encryption(report, subject, bucket, probe)


def _check_notifications(report: PreflightReport, subject: str, probe: BucketProbe) -> None:
    if probe.notification_refusal is not None:
        report.add(subject, "notifications", Verdict.PROBLEM,
                   f"its notification configuration cannot be read ({_refused(probe.notification_refusal)}); "
                   f"the deploy's custom resource must read and rewrite it")
        return
    kept = [f"{d.kind.removesuffix('Configurations').lower()} {d.arn}" for d in probe.destinations]
    for destination in probe.destinations:
        if destination.refusal is None:
            continue
        if destination.refusal.missing:
            report.add(subject, "destination", Verdict.PROBLEM,
                       f"notifies {destination.arn}, which does not exist: the deploy rewrites the whole "
                       f"configuration and S3 refuses it (Unable to validate the following destination "
                       f"configurations) — remove that configuration from the bucket or restore its destination")
        else:
            report.add(subject, "destination", Verdict.NOTE,
                       f"notifies {destination.arn}, which the caller cannot see ({_refused(destination.refusal)}): "
                       f"S3 validates it during the deploy")
    kept_text = f"kept: {', '.join(kept)}" if kept else "no other configuration"
    if probe.eventbridge:
        report.add(subject, "eventbridge", Verdict.OK, "EventBridge notifications already on")
        report.changes.append(f"{probe.name}: EventBridge already on, configuration put back ({kept_text})")
    else:
        report.add(subject, "eventbridge", Verdict.OK, "EventBridge notifications off: the deploy turns them on")
        report.changes.append(f"{probe.name}: EventBridge notifications off → on ({kept_text})")


def _check_encryption(report: PreflightReport, subject: str, bucket: BucketConfig, probe: BucketProbe) -> None:
    if probe.encryption_refusal is not None:
        report.add(subject, "encryption", Verdict.PROBLEM,
                   f"its default encryption cannot be read ({_refused(probe.encryption_refusal)})")
        return
    if probe.sse_algorithm not in KMS_ALGORITHMS:
        report.add(subject, "encryption", Verdict.OK, f"default encryption {probe.sse_algorithm or 'none'}")
        return
    key = probe.kms_key_id
    if key is None:
        report.add(subject, "encryption", Verdict.NOTE,
                   f"{probe.sse_algorithm} with the AWS managed key aws/s3: readable through S3 by this "
                   f"account's principals only")
    elif bucket.kms_key_arn is None:
        report.add(subject, "encryption", Verdict.PROBLEM,
                   f"{probe.sse_algorithm} with key {key}, and no kms_key_arn in config/{report.environment}.yaml: "
                   f"the finisher would get AccessDenied on every GET — set kms_key_arn for this bucket")
    elif key.startswith("arn:") and key != bucket.kms_key_arn:
        report.add(subject, "encryption", Verdict.PROBLEM,
                   f"{probe.sse_algorithm} with key {key}, but kms_key_arn is {bucket.kms_key_arn}: kms:Decrypt "
                   f"would be granted on the wrong key")
    else:
        report.add(subject, "encryption", Verdict.OK, f"{probe.sse_algorithm} with the configured key {key}")


def _named_resources(environment: EnvironmentConfig, region: RegionConfig) -> Iterator[tuple[str, str, Any]]:
    """(kind, name, probe) of each fixed-name resource the regional stack creates."""
    name = region.region
    yield "queue", region.queue_name, queue_exists
    yield "queue", region.dlq_name, queue_exists
    yield "queue", environment.failure_queue_name(name), queue_exists
    yield "table", environment.idempotency_table_name(name), table_exists
    yield "log group", f"/aws/lambda/{environment.notify_function_name(name)}", log_group_exists


def _check_stack(report: PreflightReport, clients: AwsClients, environment: EnvironmentConfig,
                 region: RegionConfig) -> None:
    stack = regional_stack_name(environment, region.region)
    deployed, refusal = stack_exists(clients, region.region, stack)
    if deployed is None and refusal is not None:
        report.add(f"stack {stack}", "deployed", Verdict.NOTE, f"cannot be asked ({_refused(refusal)})")
    else:
        report.add(f"stack {stack}", "deployed", Verdict.OK,
                   "deployed: the deploy updates it" if deployed else "not deployed yet: the deploy creates it")
    for kind, name, probe in _named_resources(environment, region):
        subject = f"{kind} {name}"
        exists, refused = probe(clients, region.region, name)
        if exists is None:
            report.add(subject, "reachable", Verdict.PROBLEM, f"cannot be reached ({_refused(refused)})")
        elif exists and deployed is False:
            report.add(subject, "left over", Verdict.PROBLEM,
                       f"exists in {region.region} but stack {stack} does not: left by an earlier stack (RETAIN) — "
                       f"the create fails on its fixed name; delete it (drained first) or import it (docs/deploy.md)")
        elif not exists and deployed:
            report.add(subject, "reachable", Verdict.PROBLEM,
                       f"stack {stack} is deployed but the {kind} is gone: the pipeline cannot run")
        else:
            report.add(subject, "reachable", Verdict.OK, "reachable" if exists else "created by the deploy")


def run_preflight(environment: EnvironmentConfig, clients: AwsClients) -> PreflightReport:
    """Every check of ``environment`` against the account ``clients`` reach; read-only."""
    report = PreflightReport(environment.name)
    caller = probe_caller(clients, environment.regions[0].region)
    report.caller_arn, report.caller_account = caller.arn, caller.account
    if caller.refusal is not None:
        report.add("caller", "identity", Verdict.PROBLEM, f"no usable credentials ({_refused(caller.refusal)})")
    elif environment.account and caller.account != environment.account:
        report.add("caller", "identity", Verdict.PROBLEM,
                   f"{caller.arn} is of account {caller.account}; environment {environment.name} is account "
                   f"{environment.account}")
    else:
        report.add("caller", "identity", Verdict.OK, f"{caller.arn} (account {caller.account})")
    for region in environment.regions:
        for bucket in region.buckets:
            check_bucket(report, region, bucket, probe_bucket(clients, bucket.name, region.region))
        _check_stack(report, clients, environment, region)
    return report
