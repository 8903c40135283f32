"""The notify_restore Lambda with its idempotency table, log group and least-privilege role."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from config.model import EnvironmentConfig, RegionConfig
from config.routing import ROUTING_ENV_VAR, routing_table_for
from infra.cdk.lambda_asset import LAYER_PLATFORM, LAYER_PYTHON, build_layer, layer_pins

HANDLER = "lambdas.notify_restore.handler.lambda_handler"
SERVICE_NAME = "notify_restore"
#: the layer's wheels are built for this runtime and architecture (lambda_asset.LAYER_PYTHON, LAYER_PLATFORM)
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = Duration.hours(6)


def powertools_layer(scope: Construct, construct_id: str, removal_policy: RemovalPolicy) -> lambda_.LayerVersion:
    """Our Powertools layer: requirements/dev.lock's pins for ``RUNTIME`` on ``ARCHITECTURE`` (``build_layer``),
    the versions the tests run; a new set of pins is a new layer version."""
    if RUNTIME.name != f"python{LAYER_PYTHON}" or "aarch64" not in LAYER_PLATFORM:
        raise ValueError(f"the layer is built for python{LAYER_PYTHON} on {LAYER_PLATFORM}, the function runs "
                         f"{RUNTIME.name} on arm64: move them together")
    powertools = next(pin for pin in layer_pins() if pin.startswith("aws-lambda-powertools=="))
    return lambda_.LayerVersion(
        scope, construct_id, code=lambda_.Code.from_asset(str(build_layer())),
        compatible_runtimes=[RUNTIME], compatible_architectures=[ARCHITECTURE],
        description=f"{powertools} with its tracer and parser dependencies, pinned by requirements/dev.lock",
        removal_policy=removal_policy,
    )


def key_arns(bucket_names: Sequence[str], suffixes: Sequence[str]) -> list[str]:
    """Object ARNs limited to the bag keys: ``arn:aws:s3:::bucket/*.bag.zip`` for each bucket and suffix."""
    return [f"arn:aws:s3:::{bucket}/*{suffix}" for bucket in bucket_names for suffix in suffixes]


class IdempotencyTable(Construct):
    """The Powertools idempotency store: partition key ``id``, TTL ``expiration``, on demand, PITR."""

    def __init__(self, scope: Construct, construct_id: str, *, table_name: str,
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self, "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute="expiration",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True,
            ),
            removal_policy=removal_policy,
        )


class NotifyFunction(Construct):
    """Turns one region's restore completions into RestoredWork messages on that region's work queue."""

    def __init__(self, scope: Construct, construct_id: str, *, environment: EnvironmentConfig,
                 region: RegionConfig, asset_dir: Path, work_queue: sqs.IQueue, failure_queue: sqs.IQueue,
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        notify = environment.notify
        function_name = environment.notify_function_name(region.region)
        self.idempotency = IdempotencyTable(
            self, "Idempotency", table_name=environment.idempotency_table_name(region.region),
            removal_policy=removal_policy,
        )
        table = self.idempotency.table
        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/lambda/{function_name}", retention=LOG_RETENTION,
            removal_policy=removal_policy,
        )
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: its log group, its queues, its idempotency table",
        )
        self.role.add_to_principal_policy(iam.PolicyStatement(
            sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[self.log_group.log_group_arn],
        ))
        self.role.add_to_principal_policy(iam.PolicyStatement(
            sid="SendRestoredWorks", actions=["sqs:SendMessage"], resources=[work_queue.queue_arn],
        ))
        self.role.add_to_principal_policy(iam.PolicyStatement(
            sid="UseIdempotencyTable",
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            resources=[table.table_arn],
        ))
        #: object ARNs the function may HEAD (empty when head_object is off)
        self.head_object_arns: list[str] = []
        if notify.head_object:
            # HeadObject is authorised by s3:GetObject (GetObjectVersion when pinned to the event's version-id);
            # only the bag keys of this region's buckets
            self.head_object_arns = key_arns([b.name for b in region.buckets], notify.accepted_suffixes())
            self.role.add_to_principal_policy(iam.PolicyStatement(
                sid="HeadStagedBags", actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=self.head_object_arns,
            ))
        # each regional function routes only its own region's buckets, to its own region's queue
        own_region = environment.model_copy(update={"regions": [region]})
        routing_table = routing_table_for(own_region, lambda _region, _name: work_queue.queue_url)
        self.function = lambda_.Function(
            self, "Function",
            function_name=function_name,
            description="S3 Object Restore Completed → RestoredWork on the regional work queue",
            code=lambda_.Code.from_asset(str(asset_dir)),
            handler=HANDLER,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            layers=[powertools_layer(self, "Powertools", removal_policy)],
            memory_size=notify.memory_mb,
            timeout=Duration.seconds(notify.timeout_s),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=ASYNC_MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(failure_queue),
            environment={
                ROUTING_ENV_VAR: routing_table.to_env(),
                "IDEMPOTENCY_TABLE": table.table_name,
                "IDEMPOTENCY_DAYS": str(notify.idempotency_days),
                "ACCEPTED_SUFFIXES": ",".join(notify.accepted_suffixes()),
                "HEAD_OBJECT": "true" if notify.head_object else "false",
                "FAILURE_QUEUE_URL": failure_queue.queue_url,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": environment.monitoring.namespace,
                "POWERTOOLS_LOG_LEVEL": notify.log_level,
            },
        )
