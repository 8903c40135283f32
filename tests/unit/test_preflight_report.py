"""What preflight says of a bucket it has probed (``work/preflight``), for what moto cannot show: EventBridge
already on (moto's GetBucketNotificationConfiguration never returns it), the AWS managed key, a different key."""

from __future__ import annotations

from config.model import BucketConfig, RegionConfig
from onprem.finisher.work.preflight import PreflightReport, Verdict, check_bucket
from onprem.finisher.work.preflight_probe import AwsRefusal, BucketProbe, Destination

REGION = "us-east-1"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = "arn:aws:kms:us-east-1:123456789012:key/99999999-12ab-34cd-56ef-1234567890ab"


def checked(probe: BucketProbe, bucket: BucketConfig) -> PreflightReport:
    report = PreflightReport("test")
    region = RegionConfig(region=REGION, queue_name="q", dlq_name="d", buckets=[bucket])
    check_bucket(report, region, bucket, probe)
    return report


def test_eventbridge_already_on_is_put_back_with_the_kept_destinations() -> None:
    live = Destination("TopicConfigurations", "arn:aws:sns:us-east-1:123456789012:ingest", None)
    hidden = Destination("QueueConfigurations", "arn:aws:sqs:us-east-1:210987654321:theirs",
                         AwsRefusal("AccessDenied", "not yours"))
    report = checked(BucketProbe("staging.test", REGION, eventbridge=True, destinations=[live, hidden]),
                     BucketConfig(name="staging.test", collection="NLM"))
    assert report.ok
    assert report.changes == ["staging.test: EventBridge already on, configuration put back (kept: topic "
                              "arn:aws:sns:us-east-1:123456789012:ingest, queue "
                              "arn:aws:sqs:us-east-1:210987654321:theirs)"]
    [note] = [f for f in report.findings if f.verdict is Verdict.NOTE]
    assert "cannot see (AccessDenied: not yours)" in note.message


def test_the_aws_managed_key_is_a_note_and_another_key_than_configured_a_problem() -> None:
    managed = checked(BucketProbe("staging.test", REGION, eventbridge=False, sse_algorithm="aws:kms"),
                      BucketConfig(name="staging.test", collection="NLM"))
    assert managed.ok and any("aws/s3" in f.message for f in managed.findings if f.verdict is Verdict.NOTE)
    other = checked(BucketProbe("staging.test", REGION, eventbridge=False, sse_algorithm="aws:kms",
                                kms_key_id=OTHER_KEY),
                    BucketConfig(name="staging.test", collection="NLM", kms_key_arn=KEY))
    [problem] = other.problems
    assert problem.check == "encryption" and "wrong key" in problem.message
