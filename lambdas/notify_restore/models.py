"""Powertools' S3 event models with the object size made strict (pure: no I/O).

Powertools declares ``size`` as ``NonNegativeFloat | None``: ``1234.9`` becomes 1234, ``true`` becomes 1 and
``1e30`` passes. S3 sends a whole number of bytes, so the subclasses below take only a JSON integer from 0 to
``MAX_OBJECT_SIZE``; anything else fails validation at ``…object.size`` and events.py names it InvalidObjectSize.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.utilities.parser.models.s3 import (
    S3EventNotificationEventBridgeDetailModel,
    S3EventNotificationEventBridgeModel,
    S3EventNotificationObjectModel,
    S3Message,
    S3Object,
    S3RecordModel,
)
from pydantic import Field, Strict

#: S3's largest object, 50 TB (taken as TiB, the larger reading): a size above it is not an S3 object
MAX_OBJECT_SIZE = 50 * 1024**4

#: strict: no float (not even 1234.0), no bool, no numeric string
ObjectSize = Annotated[int, Strict(), Field(ge=0, le=MAX_OBJECT_SIZE)]


class StrictEventBridgeObject(S3EventNotificationObjectModel):
    size: ObjectSize | None = None  # type: ignore[assignment]


class StrictEventBridgeDetail(S3EventNotificationEventBridgeDetailModel):
    object: StrictEventBridgeObject  # type: ignore[assignment]


class StrictEventBridgeEvent(S3EventNotificationEventBridgeModel):
    """An EventBridge S3 event whose ``detail.object.size`` is a strict byte count."""

    detail: StrictEventBridgeDetail  # type: ignore[assignment]


class StrictS3Object(S3Object):
    size: ObjectSize | None = None  # type: ignore[assignment]


class StrictS3Message(S3Message):
    object: StrictS3Object | None = None  # type: ignore[assignment]


class StrictS3Record(S3RecordModel):
    """An S3 notification record whose ``s3.object.size`` is a strict byte count."""

    s3: StrictS3Message  # type: ignore[assignment]


def is_size_error(location: tuple[int | str, ...]) -> bool:
    """Whether a validation error's location is the object size of either model."""
    return location[-1:] == ("size",) and "object" in location
