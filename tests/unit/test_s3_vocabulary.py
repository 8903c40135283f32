"""contract.s3, the one reading of S3's words: restore headers as S3 sends them, storage classes, error codes.

The error codes are those of real botocore ClientErrors raised against (in-process) moto; the one moto never
raises (RestoreAlreadyInProgress: its restores finish at once) comes from botocore's Stubber.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from contract import (
    ObjectHead,
    RestoreStatus,
    S3ErrorCode,
    S3ErrorResponse,
    StorageClass,
    error_code,
    parse_restore_header,
    restore_state,
    storage_class_of,
)

BUCKET = "glacier.staging.nlm.test.bdrc.org"
KEY = "Archive0/00/W1NLM4700/W1NLM4700.bag.zip"
DONE = 'ongoing-request="false", expiry-date="Fri, 04 Dec 2026 00:00:00 GMT"'


@pytest.mark.parametrize(("header", "ongoing", "expiry"), [
    (DONE, False, datetime(2026, 12, 4, tzinfo=UTC)),
    ('ongoing-request="true"', True, None),
    ('ongoing-request="false"', False, None),
    ('  ongoing-request = "false" ,   expiry-date = "Fri, 04 Dec 2026 00:00:00 GMT"  ', False,
     datetime(2026, 12, 4, tzinfo=UTC)),
    ('expiry-date="Fri, 04 Dec 2026 00:00:00 GMT", ongoing-request="false"', False, datetime(2026, 12, 4, tzinfo=UTC)),
    ('Ongoing-Request="TRUE"', True, None),
    ('ongoing-request="false", expiry-date="Fri, 04 Dec 2026 09:30:00 +0900"', False,
     datetime(2026, 12, 4, 0, 30, tzinfo=UTC)),
    ('ongoing-request="false", expiry-date="Fri, 04 Dec 2026 00:00:00 -0000"', False,
     datetime(2026, 12, 4, tzinfo=UTC)),
    ('ongoing-request="false", expiry-date="not a date"', False, None),
])
def test_restore_header_forms_s3_sends(header: str, ongoing: bool, expiry: datetime | None) -> None:
    state = parse_restore_header(header, "DEEP_ARCHIVE")
    assert (state.requested, state.ongoing, state.expiry) == (True, ongoing, expiry)
    assert state.expiry is None or state.expiry.tzinfo is UTC


@pytest.mark.parametrize(("head", "status"), [
    ({"StorageClass": "DEEP_ARCHIVE", "Restore": DONE}, RestoreStatus.AVAILABLE),
    ({"StorageClass": "GLACIER", "Restore": 'ongoing-request="true"'}, RestoreStatus.IN_PROGRESS),
    ({"StorageClass": "DEEP_ARCHIVE"}, RestoreStatus.EXPIRED),
    ({"StorageClass": "DEEP_ARCHIVE", "Restore": "   "}, RestoreStatus.EXPIRED),
    ({}, RestoreStatus.NOT_ARCHIVED),  # HEAD omits the class of STANDARD objects
    ({"StorageClass": "STANDARD_IA"}, RestoreStatus.NOT_ARCHIVED),
    ({"StorageClass": "A_CLASS_S3_ADDS_LATER", "Restore": 'ongoing-request="true"'}, RestoreStatus.NOT_ARCHIVED),
])
def test_restore_status_of_a_head(head: dict[str, str], status: RestoreStatus) -> None:
    assert restore_state(head).status == status


def test_an_expiry_is_not_reported_while_the_restore_is_ongoing() -> None:
    assert parse_restore_header('ongoing-request="true", expiry-date="Fri, 04 Dec 2026 00:00:00 GMT"').expiry is None


def test_known_storage_classes_are_members_and_unknown_ones_stay_as_sent() -> None:
    assert storage_class_of("DEEP_ARCHIVE") is StorageClass.DEEP_ARCHIVE
    unknown = storage_class_of("A_CLASS_S3_ADDS_LATER")
    assert unknown == "A_CLASS_S3_ADDS_LATER" and not isinstance(unknown, StorageClass)
    assert storage_class_of(None) is None and storage_class_of("") is None
    state = restore_state({"StorageClass": "A_CLASS_S3_ADDS_LATER"})
    assert state.storage_class == "A_CLASS_S3_ADDS_LATER" and not state.archived


def test_object_head_keeps_identity_checksums_and_restore_state() -> None:
    head = ObjectHead.from_response({"ETag": '"abc"', "VersionId": "v1", "ContentLength": 42,
                                     "StorageClass": "DEEP_ARCHIVE", "Restore": DONE, "ChecksumSHA256": "c2hh",
                                     "ChecksumType": "FULL_OBJECT", "ChecksumCRC32": None,
                                     "ResponseMetadata": {"HTTPStatusCode": 200}})
    assert (head.etag, head.version_id, head.size) == ('"abc"', "v1", 42)
    assert dict(head.checksums) == {"ChecksumSHA256": "c2hh", "ChecksumType": "FULL_OBJECT"}
    assert head.restore.status == RestoreStatus.AVAILABLE and head.restore.expiry == datetime(2026, 12, 4, tzinfo=UTC)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        client.put_object(Bucket=BUCKET, Key=KEY, Body=b"bag", StorageClass="DEEP_ARCHIVE")
        yield client


def _raised(call: Any, **params: Any) -> S3ErrorResponse:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return S3ErrorResponse.of(caught.value.response)


def test_a_missing_key_reads_as_missing_from_head_and_get(s3: Any) -> None:
    head = _raised(s3.head_object, Bucket=BUCKET, Key="Archive0/00/W1X/W1X.bag.zip")
    get = _raised(s3.get_object, Bucket=BUCKET, Key="Archive0/00/W1X/W1X.bag.zip")
    assert (head.code, head.status, head.missing) == (S3ErrorCode.NOT_FOUND_STATUS, 404, True)  # HEAD: no body
    assert (get.code, get.missing) == (S3ErrorCode.NO_SUCH_KEY, True)


def test_a_missing_version_reads_as_missing(s3: Any) -> None:
    get = _raised(s3.get_object, Bucket=BUCKET, Key=KEY, VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVB")
    assert (get.code, get.missing) == (S3ErrorCode.NO_SUCH_VERSION, True)


def test_a_missing_bucket_is_not_a_missing_object(s3: Any) -> None:
    reply = _raised(s3.get_object, Bucket="glacier.staging.none.test.bdrc.org", Key=KEY)
    assert (reply.code, reply.status, reply.missing) == (S3ErrorCode.NO_SUCH_BUCKET, 404, False)


def test_a_get_of_an_archived_object_is_invalid_object_state(s3: Any) -> None:
    reply = _raised(s3.get_object, Bucket=BUCKET, Key=KEY)
    assert (reply.code, reply.status, reply.missing) == (S3ErrorCode.INVALID_OBJECT_STATE, 403, False)


def test_a_head_pinned_to_another_etag_is_a_failed_precondition(s3: Any) -> None:
    reply = _raised(s3.head_object, Bucket=BUCKET, Key=KEY, IfMatch='"0123456789abcdef0123456789abcdef"')
    assert (reply.code, reply.precondition_failed, reply.missing) == (S3ErrorCode.PRECONDITION_FAILED_STATUS, True,
                                                                      False)


def test_restore_already_in_progress_is_named() -> None:
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_client_error("restore_object", "RestoreAlreadyInProgress", "Object restore is already in "
                                 "progress", 409)
        with pytest.raises(ClientError) as caught:
            client.restore_object(Bucket=BUCKET, Key=KEY, RestoreRequest={"Days": 1})
    assert error_code(caught.value.response) is S3ErrorCode.RESTORE_ALREADY_IN_PROGRESS


def test_an_error_code_the_pipeline_does_not_know_stays_as_sent() -> None:
    reply = S3ErrorResponse.of({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate."},
                                "ResponseMetadata": {"HTTPStatusCode": 503}})
    assert (reply.code, reply.status, reply.missing, reply.describe()) == ("SlowDown", 503, False, "SlowDown")
    assert not isinstance(reply.code, S3ErrorCode)
