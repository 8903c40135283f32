from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.keys import (
    InvalidWorkRid,
    archive_relpath_for_rid,
    rid_bucket_number,
    staging_key_for_rid,
    work_rid_from_key,
)

rids = st.from_regex(r"\A[A-Z][A-Za-z0-9_-]{0,20}\Z")


@pytest.mark.parametrize(
    ("key", "rid"),
    [
        ("Archive0/00/W1NLM4700/W1NLM4700.bag.zip", "W1NLM4700"),
        ("Archive1/51/W1FPL2251/W1FPL2251.bag.zip", "W1FPL2251"),
        ("W1NLM4700.bag.zip", "W1NLM4700"),
        ("W22084.zip", "W22084"),
        ("some/prefix/W3CN27014_ABC.tar.gz", "W3CN27014_ABC"),
        ("W00EGS1016286", "W00EGS1016286"),
    ],
)
def test_work_rid_from_key(key: str, rid: str) -> None:
    assert work_rid_from_key(key) == rid


@pytest.mark.parametrize("key", ["", "Archive0/00/", ".bag.zip", "Archive0/00/W1/../", "dir/1abc.zip", "a b.zip"])
def test_work_rid_from_bad_key_is_named_error(key: str) -> None:
    with pytest.raises(InvalidWorkRid):
        work_rid_from_key(key)


@pytest.mark.parametrize(
    ("rid", "nn"),
    [("W1NLM4700", "00"), ("W1FPL2251", "51"), ("W22084", "84"), ("W1KG12AB", "00"), ("W1KG1A9", "00"), ("W7", "00")],
)
def test_rid_bucket_number(rid: str, nn: str) -> None:
    assert rid_bucket_number(rid) == nn


def test_staging_key_uses_50_and_archive_path_uses_25() -> None:
    assert staging_key_for_rid("W1FPL2251") == "Archive1/51/W1FPL2251/W1FPL2251.bag.zip"
    assert str(archive_relpath_for_rid("W1FPL2251")) == "Archive2/51/W1FPL2251"
    assert staging_key_for_rid("W1NLM4700") == "Archive0/00/W1NLM4700/W1NLM4700.bag.zip"
    assert str(archive_relpath_for_rid("W1NLM4700")) == "Archive0/00/W1NLM4700"
    assert str(archive_relpath_for_rid("W22099")) == "Archive3/99/W22099"
    assert staging_key_for_rid("W22099", suffix=".zip") == "Archive1/99/W22099/W22099.zip"


def test_sample_event_keys_follow_the_layout(eventbridge_restore_event, s3_notification_restore_event) -> None:
    key = eventbridge_restore_event["detail"]["object"]["key"]
    assert staging_key_for_rid(work_rid_from_key(key)) == key
    key = s3_notification_restore_event["Records"][0]["s3"]["object"]["key"]
    assert staging_key_for_rid(work_rid_from_key(key)) == key


@given(rids)
def test_rid_key_round_trip(rid: str) -> None:
    assert work_rid_from_key(staging_key_for_rid(rid)) == rid
    assert work_rid_from_key(staging_key_for_rid(rid, suffix=".zip")) == rid


@given(rids)
def test_archive_and_staging_numbers_agree(rid: str) -> None:
    nn = rid_bucket_number(rid)
    staging = staging_key_for_rid(rid).split("/")
    archive = archive_relpath_for_rid(rid).parts
    assert staging[1] == archive[1] == nn
    assert staging[0] == f"Archive{int(nn) // 50}"
    assert archive[0] == f"Archive{int(nn) // 25}"
    assert archive[2] == rid


@given(rids, st.sampled_from(["", "x/", "Archive9/12/"]))
def test_rid_from_any_prefix(rid: str, prefix: str) -> None:
    assert work_rid_from_key(f"{prefix}{rid}.bag.zip") == rid
