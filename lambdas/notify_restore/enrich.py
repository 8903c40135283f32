"""RestoreCompletion + its route (+ HEAD facts) → RestoredWork v1. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from config.routing import Route
from contract import ContractError, RestoredWork
from contract.keys import STAGING_SUFFIXES, InvalidWorkRid, KeyOutsideLayout, rid_from_staging_key
from lambdas.notify_restore.errors import InvalidKeyRid, InvalidRestoreEvent, KeyOutsideStagingLayout
from lambdas.notify_restore.events import RestoreCompletion
from lambdas.notify_restore.head import HeadFacts


def is_accepted_key(key: str, suffixes: Iterable[str]) -> bool:
    """Whether the key is a work this pipeline restores (case-sensitive, like the EventBridge rule's filter)."""
    return any(key.endswith(suffix) for suffix in suffixes)


def work_rid_of(completion: RestoreCompletion, suffixes: tuple[str, ...] = STAGING_SUFFIXES) -> str:
    """The work RID of an object whose key is exactly its staging key (``contract.keys.rid_from_staging_key``).

    Raises KeyOutsideStagingLayout (naming the key and the key the layout expects) or InvalidKeyRid: a key the
    layout does not vouch for is never routed, whatever RID its file name starts with.
    """
    where = f"s3://{completion.bucket}/{completion.key} (event {completion.source_event_id})"
    try:
        return rid_from_staging_key(completion.key, suffixes)
    except KeyOutsideLayout as err:
        raise KeyOutsideStagingLayout(f"{err.work_rid or '-'}: {where}: {err}") from err
    except InvalidWorkRid as err:
        raise InvalidKeyRid(f"-: {where}: {err}") from err


def restored_work(completion: RestoreCompletion, route: Route, head: HeadFacts | None = None) -> RestoredWork:
    """The message for one restored object, in the region of its bucket (``route.region``).

    Raises InvalidRestoreEvent when the event's values do not satisfy the contract.
    """
    head = head or HeadFacts()
    try:
        return RestoredWork.build(
            collection=route.collection,
            bucket=completion.bucket,
            key=completion.key,
            region=route.region,
            size=completion.size,
            etag=completion.etag,
            event_time=completion.event_time,
            source_event_id=completion.source_event_id,
            version_id=completion.version_id,
            storage_class=completion.storage_class or head.storage_class,
            restore_expiry=completion.restore_expiry or head.restore_expiry,
            checksum_sha256=head.checksum_sha256,
            checksum_crc64nvme=head.checksum_crc64nvme,
        )
    except (ContractError, ValidationError) as err:
        rid = completion.key.rsplit("/", 1)[-1].split(".", 1)[0] or "-"
        raise InvalidRestoreEvent(f"{rid}: s3://{completion.bucket}/{completion.key} violates RestoredWork: "
                                  f"{err}") from err
