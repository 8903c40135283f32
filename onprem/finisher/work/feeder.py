"""``finisher run --watch DIR``: the watched folder's intake (``work/intake.py``) in a thread of its own beside the
worker's slots, sharing the worker's ledger, stages and stop signal.

The feeder takes one zip at a time (its own slot, besides ``CONCURRENCY``). It holds the folder's lock for the
run's life, so a ``finisher watch`` of the same folder is refused (and the other way round). Stopping: a signal
stops it after the zip being taken, as ``finisher watch``. With ``--drain``, the run ends when the queues are
drained (the worker's rule) **and** no zip in the folder is ready or waiting to become stable; a zip dropped
while the queues are being drained is taken before the run ends.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from pathlib import Path

from onprem.finisher.ledger.store import Ledger
from onprem.finisher.work.ingest import ingest_zip
from onprem.finisher.work.intake import Intake, Taken, WatchSettings
from onprem.finisher.work.live_view import watch_progress
from onprem.finisher.work.settings import Settings
from onprem.finisher.work.stages import Stages

logger = logging.getLogger(__name__)


def log_taken(taken: Taken) -> None:
    """One log line per zip taken, with its works (``run``'s output is its log)."""
    rids = ", ".join(taken.work_rids)
    extra = {"work_rid": taken.work_rids[0] if taken.work_rids else None, "zip": taken.name,
             "outcome": taken.outcome, "cause": taken.cause}
    if taken.outcome == "synced":
        logger.info("%s: synced %s (watched folder), moved to done/", taken.name, rids, extra=extra)
    elif taken.outcome == "already_synced":
        logger.info("%s: %s %s, moved to done/", taken.name, rids, taken.message, extra=extra)
    elif taken.outcome == "retry":
        logger.warning("%s: %s (%s): tried again later", taken.name, taken.message, taken.cause, extra=extra)
    else:
        logger.error("%s: %s (%s): moved to failed/", taken.name, taken.message, taken.cause, extra=extra)


class Feeder:
    """The intake of one folder run in a thread: ``start`` (takes the folder's lock: FolderBusy when another
    watcher holds it), ``stop`` (a signal), ``finish`` (after the worker returned)."""

    def __init__(self, intake: Intake, *, drain: bool) -> None:
        self.intake, self.drain = intake, drain
        self.results: list[Taken] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._queues_done = threading.Event()
        self._held = ExitStack()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> None:
        self._held.enter_context(self.intake.locked())
        logger.info("watching %s for bag zips (stable after %gs)", self.intake.folder,
                    self.intake.settings.stable_seconds)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the zip being taken (its sync included)."""
        self._stop.set()

    def finish(self, grace_s: float) -> list[Taken]:
        """The worker has returned. With ``drain`` and no stop asked, wait until the folder has nothing left to
        take, however long its zips take; else (a signal) stop after the zip being taken, waiting ``grace_s`` at
        most: a zip still being taken then stays in ``taking/`` and is taken again at the next start. Returns what
        was taken."""
        signalled = self._stop.is_set()
        self._queues_done.set()
        if not self.drain:
            self._stop.set()
        self._thread.join(None if self.drain and not signalled else grace_s)
        if self._thread.is_alive():
            logger.warning("%s: the feeder did not stop within %g s: a zip being taken stays in taking/ and is "
                           "taken again at the next start", self.intake.folder, grace_s)
        else:
            self._held.close()
        return self.results

    def _run(self) -> None:
        try:
            self.results = self.intake.run(self._stop, drain=self.drain, may_end=self._queues_done.is_set)
        except Exception as err:  # the ledger gone (LedgerUnavailable) or a bug: the queues' slots go on
            self.error = err
            logger.exception("%s: the watched folder's feeder stopped: %s", self.intake.folder, err)


def feeder_for(settings: Settings, stages: Stages, ledger: Ledger, folder: Path, *, stable_seconds: float,
               drain: bool) -> Feeder:
    """The feeder of ``folder`` on the worker's stages and ledger (``finisher watch``'s defaults otherwise); its
    progress is recorded for ``finisher top`` as the slots' is (kind ``watch``)."""
    folder.mkdir(parents=True, exist_ok=True)
    progress_for = watch_progress(settings.state_dir)

    def ingest(path: Path, key: str) -> list[str]:
        return ingest_zip(settings, stages, ledger, path, idempotency_key=key, progress_for=progress_for)

    watch = WatchSettings(stable_seconds=stable_seconds, poll_seconds=1.0)
    return Feeder(Intake(folder, ledger, ingest, watch, report=log_taken), drain=drain)
