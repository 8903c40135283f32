from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.errors import ContractError
from contract.keys import (
    STAGING_SUFFIXES,
    InvalidWorkRid,
    KeyOutsideLayout,
    archive_relpath_for_rid,
    rid_bucket_number,
    rid_from_staging_key,
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


@pytest.mark.parametrize(("key", "rid"), [
    ("Archive0/00/W1NLM4700/W1NLM4700.bag.zip", "W1NLM4700"),
    ("Archive1/51/W1FPL2251/W1FPL2251.bag.zip", "W1FPL2251"),
    ("Archive1/84/W22084/W22084.zip", "W22084"),
    ("Archive0/00/W3CN27014_ABC/W3CN27014_ABC.bag.zip", "W3CN27014_ABC"),
])
def test_staging_key_gives_its_work_rid(key: str, rid: str) -> None:
    assert rid_from_staging_key(key) == rid


@pytest.mark.parametrize(("key", "expected"), [
    ("W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
    ("W22084.zip", "Archive1/84/W22084/W22084.zip"),
    ("Archive0/84/W22084/W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
    ("Archive1/85/W22084/W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
    ("Archive1/84/W22085/W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
    ("Archive1/84/W22084/old/W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
    ("/Archive1/84/W22084/W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
    ("Archive1//84/W22084/W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
    ("archive1/84/W22084/W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
    ("Archive01/84/W22084/W22084.bag.zip", "Archive1/84/W22084/W22084.bag.zip"),
], ids=["bucket-root", "plain-zip-at-root", "wrong-archive-number", "wrong-nn", "other-works-folder",
        "subfolder", "leading-slash", "double-slash", "lower-case-archive", "zero-padded-archive"])
def test_key_outside_the_layout_names_the_key_the_layout_expects(key: str, expected: str) -> None:
    with pytest.raises(KeyOutsideLayout) as refused:
        rid_from_staging_key(key)
    assert (refused.value.key, refused.value.expected, refused.value.work_rid) == (key, expected, "W22084")
    assert repr(key) in str(refused.value) and repr(expected) in str(refused.value)
    assert isinstance(refused.value, ContractError)


@pytest.mark.parametrize("key", [
    "Archive1/84/W22084\n/W22084\n.bag.zip",
    "Archive1/84/W22084/W22084.bag.zip\x00.bag.zip",
    "Archive1/84/W22084/W22084\x85.bag.zip",
    "Archive0/00/W1NLM4700/W1NLM4700.tar.zip",
    "Archive0/00/W1 NLM/W1 NLM.bag.zip",
    "Archive0/00/W1+NLM/W1+NLM.bag.zip",
    "Archive0/00/W\u0f40/W\u0f40.bag.zip",
    "Archive0/00/W\uff11/W\uff11.bag.zip",
    "Archive0/00/1W/1W.bag.zip",
    "Archive0/00/.bag.zip",
], ids=["newline", "nul", "c1-control", "extra-dot", "space", "plus", "tibetan", "fullwidth-digit",
        "leading-digit", "empty-rid"])
def test_name_that_is_not_a_whole_rid_is_refused(key: str) -> None:
    with pytest.raises(InvalidWorkRid, match=r"control character|is not a work RID"):
        rid_from_staging_key(key)


def test_control_characters_are_named_by_their_escape() -> None:
    with pytest.raises(InvalidWorkRid, match=r"\\n"):
        rid_from_staging_key("Archive1/84/W22084\n/W22084\n.bag.zip")


def test_key_without_an_accepted_suffix_is_outside_the_layout() -> None:
    with pytest.raises(KeyOutsideLayout, match=r"does not end with \.bag\.zip") as refused:
        rid_from_staging_key("Archive1/84/W22084/W22084.zip", (".bag.zip",))
    assert refused.value.expected is None


def test_longest_accepted_suffix_decides_the_rid() -> None:
    assert rid_from_staging_key("Archive0/00/W1NLM4700/W1NLM4700.bag.zip", (".zip", ".bag.zip")) == "W1NLM4700"


@given(rids, st.sampled_from(STAGING_SUFFIXES))
def test_every_staging_key_gives_back_its_rid(rid: str, suffix: str) -> None:
    assert rid_from_staging_key(staging_key_for_rid(rid, suffix)) == rid


@given(rids, st.sampled_from(["", "x/", "Archive9/12/", "Archive0/00/"]))
def test_a_bag_named_for_a_work_anywhere_else_is_refused(rid: str, prefix: str) -> None:
    key = f"{prefix}{rid}.bag.zip"
    with pytest.raises(KeyOutsideLayout):
        rid_from_staging_key(key)
