"""The Lambda → finisher message contract (versioned) and the S3/archive key helpers.

A leaf package: it depends on pydantic only, so the Lambda's asset can carry it as it is.
"""

from contract.errors import ContractError, InvalidMessage, UnsupportedSchemaVersion
from contract.keys import (
    InvalidWorkRid,
    archive_relpath_for_rid,
    rid_bucket_number,
    staging_key_for_rid,
    work_rid_from_key,
)
from contract.restored_work import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    Continuation,
    RestoredWork,
    idempotency_key_for,
    message_attributes,
    parse_message,
)

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Continuation",
    "ContractError",
    "InvalidMessage",
    "InvalidWorkRid",
    "RestoredWork",
    "UnsupportedSchemaVersion",
    "archive_relpath_for_rid",
    "idempotency_key_for",
    "message_attributes",
    "parse_message",
    "rid_bucket_number",
    "staging_key_for_rid",
    "work_rid_from_key",
]
