"""S3's 403 read as "missing or not permitted": a named permanent error naming the bucket and key, never a retried
transfer error (the finisher holds no s3:ListBucket, so S3 answers a missing key 403, not 404). The same answer from
a real IAM-enforcing server is in tests/infra/test_iam_exercised.py."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from contract import S3ErrorCode, S3ErrorResponse
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.errors import ObjectMissing, PermanentError, RestoreExpired
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch.s3 import MISSING_OR_FORBIDDEN, head_object
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, fetch_and_debag

RID = "W1NLM4700"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
ETAG = '"0123456789abcdef0123456789abcdef"'


def _fetch(client: object, request: FetchRequest, staging: Path, settings: FetchSettings) -> object:
    """The one fetch path (its first GET is the zip's tail)."""
    return fetch_and_debag(client, FetchDebagJob(request, staging, settings, DebagSettings(fsync=False)))


@pytest.fixture
def stubbed():  # type: ignore[no-untyped-def]
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber


def _response(code: str, status: int) -> dict[str, object]:
    return {"Error": {"Code": code, "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.mark.parametrize(("code", "status", "forbidden"), [
    ("403", 403, True),                       # a HEAD: no body, botocore gives the status as the code
    ("AccessDenied", 403, True),              # a GET or RestoreObject outside the policy
    ("InvalidObjectState", 403, False),       # archived, no restored copy: RestoreExpired, not this
    ("InvalidAccessKeyId", 403, False),       # a credential problem on a GET stays what it is
    ("NoSuchKey", 404, False),
])
def test_which_answers_are_forbidden(code: str, status: int, forbidden: bool) -> None:
    assert S3ErrorResponse.of(_response(code, status)).forbidden is forbidden


def test_access_denied_is_a_known_code() -> None:
    assert S3ErrorResponse.of(_response("AccessDenied", 403)).code is S3ErrorCode.ACCESS_DENIED


def test_a_head_refused_with_403_is_missing_or_not_permitted_naming_bucket_and_key(stubbed) -> None:
    client, stubber = stubbed
    stubber.add_client_error("head_object", "403", "Forbidden", 403)
    with pytest.raises(ObjectMissing) as raised:
        head_object(client, FetchRequest(RID, "staging-bucket", KEY, None, ETAG, None))
    err = raised.value
    assert isinstance(err, PermanentError) and err.cause == MISSING_OR_FORBIDDEN
    assert f"s3://staging-bucket/{KEY} is missing or not permitted (HEAD: 403" in str(err)


def test_a_get_refused_with_access_denied_is_not_retried(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    stubber.add_response("head_object", {"ContentLength": 8, "ETag": ETAG})
    stubber.add_client_error("get_object", "AccessDenied", "Access Denied", 403)  # one answer: a retry would fail
    with pytest.raises(ObjectMissing, match="missing or not permitted"):
        _fetch(client, FetchRequest(RID, "b", KEY, 8, ETAG, None), tmp_path,
                     FetchSettings(part_size=4, max_concurrency=1, min_free_bytes=0, part_attempts=3))
    stubber.assert_no_pending_responses()


def test_invalid_object_state_is_still_restore_expired(stubbed, tmp_path: Path) -> None:
    client, stubber = stubbed
    stubber.add_response("head_object", {"ContentLength": 8, "ETag": ETAG, "StorageClass": "DEEP_ARCHIVE",
                                         "Restore": 'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 '
                                                    '00:00:00 GMT"'})
    stubber.add_client_error("get_object", "InvalidObjectState", "The operation is not valid", 403)
    with pytest.raises(RestoreExpired):
        _fetch(client, FetchRequest(RID, "b", KEY, 8, ETAG, None), tmp_path,
                     FetchSettings(part_size=4, max_concurrency=1, min_free_bytes=0))
