"""Named errors of notify_restore. Each one ends visibly: the invocation fails and, for asynchronous
invocations, Lambda hands the event to the on-failure destination (the region's failure queue).

The destination's record carries only the error's type and message, so the message ends with
``(cause: <cause>)``: the short machine-readable rule that refused it, also in the summary and the metrics.
"""

from __future__ import annotations


class NotifyError(Exception):
    """Base class: ``str(err)`` names the work RID (or the object) and the cause."""

    #: the per-record outcome reported in the handler's summary
    outcome = "failed"
    #: the rule that refused the event or record (``key_outside_layout`` …), ends the message
    cause = "notify_error"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"{message} (cause: {self.cause})")


class InvalidSettings(NotifyError):
    """The function's environment is incomplete or malformed (a deployment error, not an event error)."""

    cause = "invalid_settings"


class InvalidRestoreEvent(NotifyError):
    """Not a restore-completed event this function understands: malformed, wrong type, missing fields."""

    outcome = "invalid"
    cause = "invalid_event"


class UnsupportedEventVersion(InvalidRestoreEvent):
    """An event (or record) shape version this function does not know: refused whole, never half-read."""

    cause = "unsupported_event_version"


class InvalidObjectSize(InvalidRestoreEvent):
    """The object size is not a whole number of bytes from 0 to S3's largest object (fractional, boolean, text,
    negative or absurd): a value S3 never sends, so nothing in the event is trusted."""

    cause = "invalid_size"


class UndecodableKey(InvalidRestoreEvent):
    """An S3 notification key whose URL encoding does not decode to UTF-8 text."""

    cause = "undecodable_key"


class InvalidKeyRid(InvalidRestoreEvent):
    """A key named like a work whose name before the suffix is not a work RID (or that holds control characters)."""

    cause = "invalid_rid"


class KeyOutsideStagingLayout(InvalidRestoreEvent):
    """A key named like a work that is not ``Archive{NN//50}/{NN}/{RID}/{RID}{suffix}``: never routed, since the
    finisher would file the bag under the RID of a key the layout does not vouch for."""

    cause = "key_outside_layout"


class UnroutableBucket(NotifyError):
    """A bag restored in a bucket the routing table does not know: no queue to send it to."""

    outcome = "unroutable"
    cause = "unroutable_bucket"

    def __init__(self, work_rid: str, bucket: str, key: str, known: tuple[str, ...]) -> None:
        self.work_rid, self.bucket, self.key = work_rid, bucket, key
        super().__init__(
            f"{work_rid}: bucket {bucket!r} (key {key!r}) is not in this function's routing table "
            f"(knows {', '.join(known) or 'no bucket'}) — add it to the environment config and redeploy"
        )


class RestoreStillOngoing(NotifyError):
    """HEAD says the restore is still running (``ongoing-request="true"``): raised so Lambda retries."""

    outcome = "retry"
    cause = "restore_ongoing"


class RestoredObjectChanged(NotifyError):
    """HEAD shows another object than the event announced (overwritten since): nothing is sent."""

    outcome = "invalid"
    cause = "object_changed"


class RestoreBatchFailed(NotifyError):
    """Some records of a legacy ``Records`` batch failed; the good ones were sent (a retry is deduplicated).

    Each problem already ends with its own record's cause; the message lists them in record order."""

    cause = "batch_failed"

    def __init__(self, summary: dict[str, object], problems: list[str]) -> None:
        self.summary = summary
        self.problems = problems
        self.message = f"{len(problems)} record(s) of the batch failed: " + "; ".join(problems)
        Exception.__init__(self, self.message)
