"""Named errors of the finisher, split by what the worker must do with them.

Every error carries the work RID and a cause a person can act on. The worker only needs the class:
``RetryableError`` → return the message to the queue with a backoff; ``PermanentError`` → record the
cause and send the message to the DLQ at once. Each class also says what a failure leaves on disk (``cleanup``).
The ``ControlFlow`` family at the end is not a failure: a signal between parts of the finisher.
"""

from __future__ import annotations

from enum import StrEnum


class Cleanup(StrEnum):
    """What a failure of a class leaves on disk (``FinisherError.cleanup``, applied by ``debag.archive.clean_up``)."""

    RESUME = "resume"  #: the de-bag temp dir and its journal of verified segments kept: the retry resumes
    EVIDENCE = "evidence"  #: the de-bag temp dir kept as ``.debag-failed-…`` (removed if keep_evidence is off)
    #: as EVIDENCE (the bytes read are not the object's; with the one fetch path no download is on disk beside the
    #: temp dir, so nothing else goes): kept apart so the ledger and the logs name why
    DISCARD = "discard"
    PURGE = "purge"  #: the temp dir removed: bytes of a version that is gone


class Cause(StrEnum):
    """The failure causes the worker writes or branches on itself (every other one is its class's ``cause``)."""

    CONTRACT = "contract"
    LEASE_LOST = "lease_lost"
    TOO_MANY_HOPS = "too_many_hops"
    UNEXPECTED = "unexpected"


class FinisherError(Exception):
    """Base class: ``str(err)`` reads ``"<work_rid>: <cause>"``."""

    #: a short machine-readable cause used for metrics and the ledger (``checksum_mismatch`` …)
    cause: str = "error"
    #: what the failure leaves on disk; a retryable failure leaves everything for the retry to resume
    cleanup: Cleanup = Cleanup.RESUME

    def __init__(self, work_rid: str | None, message: str, *, cause: str | None = None) -> None:
        self.work_rid = work_rid or "-"
        self.message = message
        if cause is not None:
            self.cause = cause
        super().__init__(f"{self.work_rid}: {message}")


class RetryableError(FinisherError):
    """A transient condition (network, throttling, restore in progress, disk temporarily full)."""

    cause = "retryable"

    def __init__(
        self, work_rid: str | None, message: str, *, cause: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(work_rid, message, cause=cause)
        #: seconds the worker should wait before the message becomes visible again (None = default backoff)
        self.retry_after = retry_after


class PermanentError(FinisherError):
    """A condition a retry cannot fix (bad bag, unsafe zip, contract error): goes to the DLQ with the reason."""

    cause = "permanent"
    cleanup = Cleanup.EVIDENCE


# --- fetch -------------------------------------------------------------------------------------------
class RestoreInProgress(RetryableError):
    cause = "restore_in_progress"


class RestoreExpired(RetryableError):
    """The restored copy is gone (InvalidObjectState); the worker re-requests it and retries later."""

    cause = "restore_expired"


class RestoreWaitExceeded(PermanentError):
    """A work waited for its restore (in progress, or re-requested after it expired) past ``restore_max_wait_hours``:
    the restore is lost or was never made. Nothing was downloaded: the evidence policy finds nothing to keep."""

    cause = "restore_wait_exceeded"


class ObjectChanged(PermanentError):
    """The object's ETag/version no longer matches the message: an overwritten object is never mixed in."""

    cause = "object_changed"
    cleanup = Cleanup.PURGE


class InsufficientSpace(RetryableError):
    cause = "disk_full"


class TransferError(RetryableError):
    cause = "transfer"


class IntegrityError(RetryableError):
    """Downloaded bytes do not match the object's size or stored checksum (re-downloaded on retry)."""

    cause = "download_integrity"
    cleanup = Cleanup.DISCARD


# --- de-bag ------------------------------------------------------------------------------------------
class UnsafeArchive(PermanentError):
    """A zip member that could escape the staging directory, a symlink, a bomb, duplicates …"""

    cause = "unsafe_zip"


class CorruptArchive(PermanentError):
    cause = "corrupt_zip"


class LocalHeaderMismatch(CorruptArchive):
    """A member's local header disagrees with the central directory (name, method, CRC, sizes, offsets)."""

    cause = "local_header_mismatch"


class BagInvalid(PermanentError):
    """BagIt structure or fixity failure; ``details`` lists each file problem."""

    cause = "bag_invalid"

    def __init__(self, work_rid: str | None, message: str, *, details: list[str] | None = None,
                 cause: str | None = None) -> None:
        super().__init__(work_rid, message, cause=cause)
        self.details = details or []


class ChecksumMismatch(BagInvalid):
    cause = "checksum_mismatch"


# --- sync --------------------------------------------------------------------------------------------
class SyncFailed(RetryableError):
    cause = "sync_failed"


class SyncRefused(PermanentError):
    """syncOneWork.sh refused the work itself (usage, not a work, -A on an empty source): a retry cannot help."""

    cause = "sync_refused"


class HookFailed(RetryableError):
    cause = "hook_failed"


class SyncConfigInvalid(PermanentError):
    """A ``site-sync.yml`` or a work's ``config/sync.yml`` that cannot be read or validated (file and key named)."""

    cause = "sync_config_invalid"


class WorkRidRefused(SyncRefused):
    """The staged work's RID is not a whole RID (a trailing newline, a control character) or its folder is not
    named after it: the sync script would archive another folder."""

    cause = "invalid_work_rid"


class ArchiveUnavailable(RetryableError):
    """The archive root does not exist (an unmounted archive): never created, retried once it is mounted."""

    cause = "archive_unavailable"


class ArchiveCopyMismatch(PermanentError):
    """After the sync, the archive copy differs from the bag's manifests or the staged work (file and digests
    or sizes named): the staging copy is kept."""

    cause = "archive_copy_mismatch"


class ArchiveCopyMissing(ArchiveCopyMismatch):
    """The sync script succeeded but the work is not at its archive path."""

    cause = "archive_copy_missing"


# --- contract / queue --------------------------------------------------------------------------------
class ContractError(PermanentError):
    cause = Cause.CONTRACT


# --- fetch (details) ---------------------------------------------------------------------------------
class ObjectMissing(PermanentError):
    """The object (or the version named in the message) does not exist in the bucket."""

    cause = "object_missing"
    cleanup = Cleanup.PURGE


# --- de-bag (details): each zip safety rule and each bag rule has its own name ------------------------
class UnsafeMemberPath(UnsafeArchive):
    """Absolute path, ``..``, backslash, drive letter, empty or NUL component in a member name."""

    cause = "unsafe_member_path"


class SymlinkMember(UnsafeArchive):
    """A member whose unix mode is a symlink or any other non-regular, non-directory file."""

    cause = "symlink_member"


class DuplicateMember(UnsafeArchive):
    cause = "duplicate_member"


class ZipBomb(UnsafeArchive):
    """Declared or actual sizes over the configured limits, or a compression ratio of a bomb."""

    cause = "zip_bomb"


class OverlappingMembers(UnsafeArchive):
    cause = "overlapping_members"


class NonUtf8MemberName(UnsafeArchive):
    """A non-ASCII member name that is not UTF-8: flagged UTF-8 (bit 11) with invalid bytes, or unflagged and
    not raw UTF-8 written on Unix (Info-ZIP): its encoding cannot be known."""

    cause = "non_utf8_name"


class ControlCharacterName(UnsafeArchive):
    """A member name holding a control character (C0, DEL, C1) other than NUL (NUL is an UnsafeMemberPath)."""

    cause = "control_character_name"


class MemberNameTooLong(UnsafeArchive):
    """A path component over 255 bytes (UTF-8) or a path that would pass PATH_MAX under the staging dir."""

    cause = "member_name_too_long"


class CaseCollision(DuplicateMember):
    """Two member paths equal after case folding: a case-insensitive archive target would merge them."""

    cause = "case_collision"


class EncryptedMember(UnsafeArchive):
    """A member encrypted (zip flag bit 0): a restored bag is never decrypted."""

    cause = "encrypted_member"


class UnsupportedCompression(UnsafeArchive):
    """A member compressed with a method other than stored (0) or deflated (8): Deflate64, bzip2, lzma …"""

    cause = "unsupported_compression"


class FetchFileRejected(BagInvalid):
    """``fetch.txt`` in a restored bag: a restored bag must be complete."""

    cause = "fetch_txt"


class UnsafeManifestPath(BagInvalid):
    cause = "unsafe_manifest_path"


class MissingTagManifest(BagInvalid):
    cause = "missing_tagmanifest"


class WeakChecksums(BagInvalid):
    """The bag's manifests use only weak algorithms (md5/sha1) and the settings require sha256/sha512."""

    cause = "weak_checksums"


class BagIncomplete(BagInvalid):
    """Files listed in a manifest but missing from the zip, or present but listed nowhere."""

    cause = "bag_incomplete"


class OxumMismatch(BagInvalid):
    cause = "oxum_mismatch"


# --- de-bag (BagIt semantics, which works a zip may hold) ---------------------------------------------
class UnexpectedWork(BagInvalid):
    """The zip holds a work it was not fetched (or ingested) for: the bag never decides where it goes."""

    cause = "unexpected_work"


class MissingWork(BagInvalid):
    """The zip does not hold a work it was fetched (or ingested) for."""

    cause = "missing_work"


class NoBagInZip(BagInvalid):
    """A ``.bag.zip`` (or any zip when plain zips are off) without a bag: nothing but the zip's CRCs to check."""

    cause = "no_bag"


class BagRidMismatch(BagInvalid):
    """``BDRC-RID`` in bag-info.txt names another work than the bag's folder (or the key, for a root bag)."""

    cause = "bag_rid_mismatch"


class BagDeclarationInvalid(BagInvalid):
    """bagit.txt with a byte-order mark, whitespace around a line, or a malformed version (RFC 8493 §2.1.1)."""

    cause = "bagit_txt_invalid"


class TagFileUndecodable(BagInvalid):
    """A tag file that does not decode in the declared Tag-File-Character-Encoding, or an unknown encoding."""

    cause = "tag_file_encoding"


class TagManifestIncomplete(BagInvalid):
    """A tag manifest that does not list bagit.txt, bag-info.txt and every payload manifest."""

    cause = "tagmanifest_incomplete"


# --- worker -------------------------------------------------------------------------------------------
class ForeignBucket(ContractError):
    """The message names a bucket that is not a staging bucket of this environment: never fetched."""

    cause = "foreign_bucket"


class UnexpectedError(RetryableError):
    """An exception no stage names (a bug, an unforeseen condition): retried ``unexpected_attempts`` times at most,
    then moved to the DLQ by the finisher itself with this cause."""

    cause = Cause.UNEXPECTED


class TooManyHops(PermanentError):
    """A work handed on ``max_hops`` times (each near the 12 h visibility cap) without finishing."""

    cause = Cause.TOO_MANY_HOPS


class RetriesExhausted(PermanentError):
    """A retryable failure the finisher stops retrying (the message's last receive before SQS's maxReceiveCount, or
    ``unexpected`` repeated): sent to the DLQ with the original failure's cause and message, so SQS never moves it
    there without a reason."""

    def __init__(self, failure: FinisherError, why: str) -> None:
        super().__init__(failure.work_rid, f"{failure.message} ({why})", cause=failure.cause)
        self.failure = failure


class NameTooLong(PermanentError):
    """A member's file name over the filesystem's limit (255 bytes) or its path over PATH_MAX (ENAMETOOLONG)."""

    cause = "name_too_long"


class UndecodableText(PermanentError):
    """A tag file or name that does not decode in its declared (or the default UTF-8) encoding."""

    cause = "undecodable_text"


# --- ledger -------------------------------------------------------------------------------------------
class LedgerUnavailable(FinisherError):
    """The ledger database cannot be used: corrupt, read-only, or locked by another process past the lock timeout.

    Not about one work: ``str(err)`` reads ``"ledger <path>: <cause>"``; the CLI prints it as one line and exits 3.
    """

    cause = "ledger_unavailable"

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(None, f"ledger {location}: {reason}")
        self.location, self.reason = location, reason
        self.args = (self.message,)

    def __str__(self) -> str:
        return self.message


# --- control flow: not a failure, a signal between parts of the finisher (never a FinisherError) -----------
class ControlFlow(Exception):
    """Not a failure: a signal between parts of the finisher. No stage records it, no cleanup policy applies."""


class InterruptReason(StrEnum):
    """Why the worker stops a work (``CancelToken.cancel``)."""

    SHUTDOWN = "shutdown"  #: the finisher stops: the message is released
    HANDOFF = "handoff"  #: near the 12 h visibility cap: handed on as a continuation
    LEASE_LOST = "lease_lost"  #: the receipt handle or the ledger lease is no longer ours: left alone


class WorkInterrupted(ControlFlow):
    """The worker asked a stage to stop; partial downloads and de-bag journals stay resumable."""

    def __init__(self, work_rid: str, reason: InterruptReason) -> None:
        self.work_rid, self.reason = work_rid, InterruptReason(reason)
        super().__init__(f"{work_rid}: interrupted ({self.reason})")


class WorkSuperseded(ControlFlow):
    """The message names an older version of its object: the archive must not go back to it."""

    def __init__(self, current_version_id: str) -> None:
        self.current_version_id = current_version_id
        super().__init__(current_version_id)


class ExtractionCancelled(ControlFlow):
    """Another member failed: this one stops early (never escapes the de-bag stage)."""


class ReceiptHandleInvalid(ControlFlow):
    """The message is no longer ours (its handle expired or another receiver got it)."""


# --- intake -------------------------------------------------------------------------------------------
class FolderBusy(RuntimeError):
    """Another watcher holds the intake folder's lock: two watchers would race for the same zips."""
