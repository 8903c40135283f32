"""One hand-delivered zip, start to finish: registered in the ledger, de-bagged, synced — no S3, no queue."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from contract import work_rid_from_key
from onprem.finisher.errors import FinisherError, PermanentError, UnexpectedError
from onprem.finisher.ledger.store import Event, Ledger, Phase, ingest_key
from onprem.finisher.progress import Progress, make_progress
from onprem.finisher.work.cancel import CancelToken
from onprem.finisher.work.failures import named_failure
from onprem.finisher.work.settings import Settings
from onprem.finisher.work.stages import StageContext, Stages

logger = logging.getLogger(__name__)


def _named(err: Exception, rid: str) -> FinisherError:
    """``err`` itself when it is named; its named permanent error; else ``unexpected`` (a bug or unforeseen)."""
    if isinstance(err, FinisherError):
        return err
    named = named_failure(err, rid)
    if named is not None:
        return named
    logger.error("%s: unexpected error while ingesting", rid, exc_info=err, extra={"work_rid": rid})
    return UnexpectedError(rid, f"unexpected {type(err).__name__}: {err}")


def ingest_zip(settings: Settings, stages: Stages, ledger: Ledger, path: Path,
               expected_rids: frozenset[str] | None = None, *, idempotency_key: str | None = None,
               progress_for: Callable[[str, str], Progress] = make_progress) -> list[str]:
    """De-bag and sync a local zip with ``stages`` (the real ones: ``wiring.real_stages``); returns the synced RIDs.

    ``expected_rids``: the works the zip must hold, every one of them and no other (None: the work named by the
    zip's file name alone). A zip of several works is taken only when the operator names each of them.
    ``idempotency_key``: the ledger key (default: from the path, size and mtime; the watched folder's is its name,
    size and SHA-256, ``work/intake.py``). A key already synced returns at once. ``progress_for(label, rid)``: the
    stages' reporters (``run --watch`` records them for ``finisher top``).

    A refusal is recorded in the ledger (the cause and message; phase ``failed`` unless a retry could help, e.g.
    disk full) before it is raised; an exception nothing named is recorded (phase ``failed``) and raised as
    ``unexpected``. The de-bag evidence is kept as for queued works.
    """
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    rid = work_rid_from_key(path.name)
    stat = path.stat()
    key = idempotency_key or ingest_key(str(path), stat.st_size, stat.st_mtime_ns)
    record = ledger.register_ingest(key, rid, str(path), stat.st_size)
    if record.phase == Phase.SYNCED:
        logger.info("%s: %s was already ingested", rid, path, extra={"work_rid": rid})
        return [rid]
    settings.ensure_dirs()
    ctx = StageContext(CancelToken(rid), lambda label: progress_for(label, rid))
    try:
        staged = (stages.debag(rid, path, key, ctx, expected_rids=expected_rids) if expected_rids
                  else stages.debag(rid, path, key, ctx))
        ledger.advance(key, Phase.DEBAGGED, works=[s.to_detail() for s in staged])
        for item in staged:
            synced = stages.sync(item, ctx)
            ledger.note(key, Event.WORK_SYNCED, work_rid=item.work_rid,
                        archive_path=str(synced.archive_path) if synced.archive_path else None)
    except Exception as err:
        failure = _named(err, rid)
        # no retry loop here: an unexpected failure ends this ingest like a permanent one
        ends = isinstance(failure, (PermanentError, UnexpectedError))
        ledger.fail(key, failure.cause, str(failure), permanent=ends)
        if ends and stages.keep_evidence is not None:
            stages.keep_evidence(rid, key)
        if failure is err:
            raise
        raise failure from err
    ledger.advance(key, Phase.SYNCED, works=[s.work_rid for s in staged])
    return [s.work_rid for s in staged]
