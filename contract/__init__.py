"""The Lambda → finisher message contract (versioned), the S3/archive key helpers and the S3 vocabulary.

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
from contract.s3 import (
    ARCHIVE_CLASSES,
    ObjectHead,
    RestoreState,
    RestoreStatus,
    S3ErrorCode,
    S3ErrorResponse,
    StorageClass,
    error_code,
    parse_restore_header,
    restore_state,
    storage_class_of,
)

__all__ = [
    "ARCHIVE_CLASSES",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Continuation",
    "ContractError",
    "InvalidMessage",
    "InvalidWorkRid",
    "ObjectHead",
    "RestoreState",
    "RestoreStatus",
    "RestoredWork",
    "S3ErrorCode",
    "S3ErrorResponse",
    "StorageClass",
    "UnsupportedSchemaVersion",
    "archive_relpath_for_rid",
    "error_code",
    "idempotency_key_for",
    "message_attributes",
    "parse_message",
    "parse_restore_header",
    "restore_state",
    "rid_bucket_number",
    "staging_key_for_rid",
    "storage_class_of",
    "work_rid_from_key",
]
