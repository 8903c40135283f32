"""The read-only AWS calls of ``finisher preflight``: what a staging bucket, a named resource and the caller are.

Nothing here writes: GetBucketLocation, GetBucketNotificationConfiguration, GetBucketEncryption, the destinations'
Get/Describe calls, GetCallerIdentity, GetQueueUrl, DescribeTable, DescribeLogGroups, DescribeStacks. Each probe
returns what it saw, or the AWS error code that stopped it (``Probe.error``), never raises for a refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onprem.finisher.work.clients import AwsClients

#: the three kinds of notification destination S3 validates on every PutBucketNotificationConfiguration
DESTINATION_KINDS = {"QueueConfigurations": "QueueArn", "TopicConfigurations": "TopicArn",
                     "LambdaFunctionConfigurations": "LambdaFunctionArn"}
#: codes meaning "this does not exist" (per service), as opposed to "you may not look"
MISSING_CODES = frozenset({"NoSuchBucket", "NotFound", "404", "AWS.SimpleQueueService.NonExistentQueue",
                           "QueueDoesNotExist", "ResourceNotFoundException", "ValidationError"})


@dataclass(frozen=True)
class AwsRefusal:
    """An AWS call that did not answer: its code (``NoSuchBucket``, ``AccessDenied``, ``EndpointConnectionError``)
    and message."""

    code: str
    message: str

    @property
    def missing(self) -> bool:
        return self.code in MISSING_CODES


def _call(operation: Callable[[], Any]) -> tuple[Any, AwsRefusal | None]:
    try:
        return operation(), None
    except ClientError as err:
        error = err.response.get("Error", {})
        code = str(error.get("Code") or err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        return None, AwsRefusal(code, str(error.get("Message") or err))
    except BotoCoreError as err:  # no credentials, no endpoint: said as a finding, not a traceback
        return None, AwsRefusal(type(err).__name__, str(err))


@dataclass(frozen=True)
class Destination:
    """One existing (non-EventBridge) notification destination of a bucket."""

    kind: str  # QueueConfigurations / TopicConfigurations / LambdaFunctionConfigurations
    arn: str
    #: None: it answered; else why it could not be seen (``missing`` = S3's validation of the rewrite fails)
    refusal: AwsRefusal | None


@dataclass(frozen=True)
class BucketProbe:
    """What one staging bucket is, as far as the caller may see."""

    name: str
    location: str | None = None  # its real region (GetBucketLocation, us-east-1 for an empty constraint)
    refusal: AwsRefusal | None = None  # GetBucketLocation's refusal: nothing else was asked
    eventbridge: bool | None = None
    destinations: list[Destination] = field(default_factory=list)
    notification_refusal: AwsRefusal | None = None
    sse_algorithm: str | None = None  # None: no default encryption configured
    kms_key_id: str | None = None
    encryption_refusal: AwsRefusal | None = None


def region_of_location(constraint: str | None) -> str:
    """GetBucketLocation's constraint as a region: empty is us-east-1, the legacy ``EU`` is eu-west-1."""
    if not constraint:
        return "us-east-1"
    return "eu-west-1" if constraint == "EU" else constraint


def _arn_region_account(arn: str) -> tuple[str, str, str]:
    parts = arn.split(":")
    return (parts[3], parts[4], parts[-1]) if len(parts) >= 6 else ("", "", arn)


def _destination(clients: AwsClients, kind: str, arn: str) -> Destination:
    region, account, name = _arn_region_account(arn)
    if kind == "QueueConfigurations":
        sqs = clients.client("sqs", region)
        _, refusal = _call(lambda: sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account))
    elif kind == "TopicConfigurations":
        _, refusal = _call(lambda: clients.client("sns", region).get_topic_attributes(TopicArn=arn))
    else:
        _, refusal = _call(lambda: clients.client("lambda", region).get_function(FunctionName=arn))
    return Destination(kind, arn, refusal)


def probe_bucket(clients: AwsClients, name: str, configured_region: str) -> BucketProbe:
    """The bucket's region, then (asked in its real region) its notifications, their destinations and its
    default encryption."""
    answer, refusal = _call(lambda: clients.s3(configured_region).get_bucket_location(Bucket=name))
    if refusal is not None:
        return BucketProbe(name, refusal=refusal)
    location = region_of_location(answer.get("LocationConstraint"))
    s3 = clients.s3(location)
    notifications, notification_refusal = _call(lambda: s3.get_bucket_notification_configuration(Bucket=name))
    destinations: list[Destination] = []
    eventbridge = None
    if notifications is not None:
        eventbridge = "EventBridgeConfiguration" in notifications
        destinations = [_destination(clients, kind, str(entry[arn_field]))
                        for kind, arn_field in DESTINATION_KINDS.items() for entry in notifications.get(kind, [])]
    encryption, encryption_refusal = _call(lambda: s3.get_bucket_encryption(Bucket=name))
    algorithm = key_id = None
    if encryption is not None:
        rules = encryption.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        algorithm, key_id = default.get("SSEAlgorithm"), default.get("KMSMasterKeyID")
    elif encryption_refusal is not None and encryption_refusal.code == "ServerSideEncryptionConfigurationNotFoundError":
        encryption_refusal = None  # no default encryption: nothing to decrypt
    return BucketProbe(name, location, None, eventbridge, destinations, notification_refusal, algorithm, key_id,
                       encryption_refusal)


@dataclass(frozen=True)
class Caller:
    account: str | None
    arn: str | None
    refusal: AwsRefusal | None


def probe_caller(clients: AwsClients, region: str) -> Caller:
    answer, refusal = _call(lambda: clients.client("sts", region).get_caller_identity())
    if answer is None:
        return Caller(None, None, refusal)
    return Caller(str(answer["Account"]), str(answer["Arn"]), None)


def stack_exists(clients: AwsClients, region: str, stack_name: str) -> tuple[bool | None, AwsRefusal | None]:
    """Whether ``stack_name`` is deployed in ``region`` (None when the caller may not ask)."""
    answer, refusal = _call(lambda: clients.client("cloudformation", region).describe_stacks(StackName=stack_name))
    if answer is not None:
        return any(s.get("StackStatus") != "DELETE_COMPLETE" for s in answer.get("Stacks", [])), None
    return (False, None) if refusal is not None and refusal.missing else (None, refusal)


def queue_exists(clients: AwsClients, region: str, name: str) -> tuple[bool | None, AwsRefusal | None]:
    _, refusal = _call(lambda: clients.client("sqs", region).get_queue_url(QueueName=name))
    return _exists(refusal)


def table_exists(clients: AwsClients, region: str, name: str) -> tuple[bool | None, AwsRefusal | None]:
    _, refusal = _call(lambda: clients.client("dynamodb", region).describe_table(TableName=name))
    return _exists(refusal)


def log_group_exists(clients: AwsClients, region: str, name: str) -> tuple[bool | None, AwsRefusal | None]:
    answer, refusal = _call(lambda: clients.client("logs", region).describe_log_groups(logGroupNamePrefix=name))
    if answer is None:
        return None, refusal
    return any(g.get("logGroupName") == name for g in answer.get("logGroups", [])), None


def _exists(refusal: AwsRefusal | None) -> tuple[bool | None, AwsRefusal | None]:
    if refusal is None:
        return True, None
    return (False, None) if refusal.missing else (None, refusal)
