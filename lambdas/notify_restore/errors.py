"""Named errors of notify_restore. Each one ends visibly: the invocation fails and, for asynchronous
invocations, Lambda hands the event to the on-failure destination (the region's failure queue)."""

from __future__ import annotations


class NotifyError(Exception):
    """Base class: ``str(err)`` names the work RID (or the object) and the cause."""

    #: the per-record outcome reported in the handler's summary
    outcome = "failed"


class InvalidSettings(NotifyError):
    """The function's environment is incomplete or malformed (a deployment error, not an event error)."""


class InvalidRestoreEvent(NotifyError):
    """Not a restore-completed event this function understands: malformed, wrong type, missing fields."""

    outcome = "invalid"


class UnsupportedEventVersion(InvalidRestoreEvent):
    """An event (or record) shape version this function does not know: refused whole, never half-read."""


class UnroutableBucket(NotifyError):
    """A bag restored in a bucket the routing table does not know: no queue to send it to."""

    outcome = "unroutable"

    def __init__(self, work_rid: str, bucket: str, key: str, known: tuple[str, ...]) -> None:
        self.work_rid, self.bucket, self.key = work_rid, bucket, key
        super().__init__(
            f"{work_rid}: bucket {bucket!r} (key {key!r}) is not in this function's routing table "
            f"(knows {', '.join(known) or 'no bucket'}) — add it to the environment config and redeploy"
        )


class RestoreStillOngoing(NotifyError):
    """HEAD says the restore is still running (``ongoing-request="true"``): raised so Lambda retries."""

    outcome = "retry"


class RestoredObjectChanged(NotifyError):
    """HEAD shows another object than the event announced (overwritten since): nothing is sent."""

    outcome = "invalid"


class RestoreBatchFailed(NotifyError):
    """Some records of a legacy ``Records`` batch failed; the good ones were sent (a retry is deduplicated)."""

    def __init__(self, summary: dict[str, object], problems: list[str]) -> None:
        self.summary = summary
        self.problems = problems
        super().__init__(f"{len(problems)} record(s) of the batch failed: " + "; ".join(problems))
