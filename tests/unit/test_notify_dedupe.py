"""notify_restore's dedupe identity: one restore of one object version, whatever delivers it."""

from __future__ import annotations

from datetime import UTC, datetime

from contract import RestoredWork
from lambdas.notify_restore.dedupe import restore_identity

EXPIRY = datetime(2026, 11, 30, tzinfo=UTC)


def _work(event_id: str, restore_expiry: datetime | None = EXPIRY,
          event_time: datetime = datetime(2026, 11, 20, 8, 47, 18, tzinfo=UTC)) -> RestoredWork:
    return RestoredWork.build(collection="NLM", bucket="glacier.staging.nlm.bdrc.org",
                              key="Archive0/00/W1NLM4700/W1NLM4700.bag.zip", region="ap-northeast-2", size=10,
                              etag="41654cbd2a8f2d3c0abc83444fde825b-2029", event_time=event_time,
                              source_event_id=event_id, version_id="rHKK9t5p3kcbTA8vLv.bZCnNitDHjIgz",
                              restore_expiry=restore_expiry)


def test_redeliveries_of_one_restore_share_an_identity() -> None:
    assert restore_identity(_work("first")) == restore_identity(_work("redelivered"))


def test_a_later_restore_of_the_same_version_has_its_own_identity() -> None:
    later = _work("later", restore_expiry=datetime(2026, 12, 12, tzinfo=UTC))
    assert later.idempotency_key == _work("first").idempotency_key
    assert restore_identity(later) != restore_identity(_work("first"))


def test_without_an_expiry_the_event_time_tells_restores_apart() -> None:
    one = _work("a", restore_expiry=None)
    assert restore_identity(one) == restore_identity(_work("b", restore_expiry=None))
    assert restore_identity(one) != restore_identity(_work("c", restore_expiry=None,
                                                            event_time=datetime(2026, 12, 2, tzinfo=UTC)))
    assert restore_identity(one).endswith("#event:2026-11-20T08:47:18Z")
