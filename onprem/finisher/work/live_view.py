"""The live view's read model (``finisher top``): what the finishers of a ledger are doing now, read from another
process — the slots (the works leased now, each with the stage it is in, bytes, rate and ETA), the backlog by
restore expiry, the latest failures with their causes, the works per phase.

Two sources, both readable from another terminal or container: the ledger (leases, phases, causes, the backlog's
index) and the progress files a running ``finisher run`` keeps in ``<state>/live/`` (``progress.RecordedProgress``,
rewritten at most once a second). A progress file counts only for the finisher process that holds the work's
lease now (its host and pid are in the lease's owner): a file left by an earlier attempt or a dead process is
never shown as current. A zip of the watched folder (``run --watch``) holds no lease: its stage is a slot while
its file is unfinished and was written within ``WATCH_FRESH``. With a ledger shared by several hosts, the other
hosts' works are shown from the ledger alone (their progress files are in their own state directories).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from onprem.finisher.ledger.live import LeasedWork, leased_works, phase_counts, recent_failures
from onprem.finisher.ledger.store import Ledger, Phase
from onprem.finisher.progress import LIVE_SUFFIX, Progress, make_progress, recording

logger = logging.getLogger(__name__)

#: a watched folder's zip (no lease) is in a slot while its unfinished progress file is this fresh
WATCH_FRESH = timedelta(seconds=30)
#: a queued row not seen for this long has lost its message (as for the backlog's index)
STALE_AFTER = timedelta(hours=24)
#: what a slot does next after the milestone its ledger row reached, when no progress file says more
NEXT_STEP: dict[str, str] = {
    Phase.RECEIVED: "restore check", Phase.RESTORE_COMPLETED: "download", Phase.DOWNLOADED: "de-bag",
    Phase.DEBAGGED: "sync", Phase.SYNCED: "hook", Phase.FAILED: "retry"}


def live_dir(state_dir: Path) -> Path:
    """Where ``finisher run`` keeps the progress of its works (``<state>/live``)."""
    return state_dir / "live"


def watch_progress(state_dir: Path) -> Callable[[str, str], Progress]:
    """The reporters of a watched folder's zips (``watch``, ``run --watch``), recorded in ``live_dir`` with kind
    ``watch`` (no lease: ``read_snapshot`` shows them while fresh)."""
    return recording(make_progress, live_dir(state_dir), kind="watch")


@dataclass(frozen=True)
class StageProgress:
    """One stage of one work as its progress file last told it."""

    work_rid: str
    label: str
    #: ``queue`` (a leased work of ``run``) or ``watch`` (a zip of the watched folder)
    kind: str
    host: str
    pid: int
    bytes_done: int
    total_bytes: int
    files_done: int
    total_files: int
    rate_bytes_per_s: float | None
    #: aware UTC
    started_at: datetime
    #: aware UTC
    updated_at: datetime
    finished: bool

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the recorded rate; None without a rate or a total."""
        if self.finished:
            return 0.0
        if not self.rate_bytes_per_s or self.total_bytes <= 0:
            return None
        return max(self.total_bytes - self.bytes_done, 0) / self.rate_bytes_per_s

    def held_by(self, lease_owner: str) -> bool:
        """True when this file is the progress of the finisher process that holds ``lease_owner``."""
        return lease_owner.startswith(f"{self.host}:{self.pid}/")


@dataclass(frozen=True)
class Slot:
    """A work in a finisher's slot: its ledger phase, what it does now, the progress of that stage if known."""

    work_rid: str
    phase: str
    doing: str
    owner: str
    #: aware UTC: the lease's last heartbeat
    heartbeat_at: datetime | None
    size: int | None
    stage: StageProgress | None


@dataclass(frozen=True)
class BacklogEntry:
    work_rid: str
    #: aware UTC
    restore_expiry: datetime
    hours_left: float


@dataclass(frozen=True)
class Failure:
    work_rid: str
    phase: str
    cause: str
    message: str | None
    attempts: int
    #: aware UTC
    at: datetime


@dataclass(frozen=True)
class LiveSnapshot:
    """One frame of the live view."""

    #: aware UTC
    at: datetime
    slots: list[Slot]
    backlog: list[BacklogEntry]
    #: the whole backlog's length (``backlog`` holds its first rows)
    backlog_total: int
    failures: list[Failure]
    phases: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The snapshot as JSON-ready values (times in ISO 8601, UTC)."""
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        document = plain(asdict(self))
        for slot, raw in zip(self.slots, document["slots"], strict=True):
            if slot.stage is not None:
                raw["stage"]["eta_s"] = slot.stage.eta_s
        return document  # type: ignore[no-any-return]


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def read_stage_files(folder: Path) -> list[StageProgress]:
    """Every progress file of ``folder`` that reads (one being replaced, or foreign, is skipped)."""
    stages = []
    for path in sorted(folder.glob(f"*{LIVE_SUFFIX}")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            stages.append(StageProgress(
                work_rid=str(raw["work_rid"]), label=str(raw["label"]), kind=str(raw.get("kind", "queue")),
                host=str(raw["host"]), pid=int(raw["pid"]),
                bytes_done=int(raw["bytes_done"]), total_bytes=int(raw["total_bytes"]),
                files_done=int(raw["files_done"]), total_files=int(raw["total_files"]),
                rate_bytes_per_s=None if raw.get("rate_bytes_per_s") is None else float(raw["rate_bytes_per_s"]),
                started_at=datetime.fromtimestamp(float(raw["started_at"]), UTC),
                updated_at=datetime.fromtimestamp(float(raw["updated_at"]), UTC), finished=bool(raw["finished"])))
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.debug("%s: not a progress file: %s", path, err)
    return stages


def _slot(work: LeasedWork, stages: list[StageProgress]) -> Slot:
    """The slot of a leased work: the stages in progress of its lease holder (``download + de-bag`` while the
    de-bag runs on the arriving bytes) with the counts of the download if it runs (the bytes still to come over
    the network), else of the first started; without one, the step after its phase."""
    own = [s for s in stages if s.work_rid == work.work_rid and s.held_by(work.lease_owner)]
    running = sorted((s for s in own if not s.finished), key=lambda s: (s.label != "download", s.started_at))
    stage = running[0] if running else None
    doing = " + ".join(s.label for s in running) or NEXT_STEP.get(work.phase, work.phase)  # StrEnum keys match str
    return Slot(work.work_rid, work.phase, doing, work.lease_owner, _aware(work.lease_heartbeat_at), work.size, stage)


def read_snapshot(ledger: Ledger, progress_dir: Path, *, now: datetime | None = None, backlog_limit: int = 10,
                  failures_limit: int = 8) -> LiveSnapshot:
    """One frame: the slots of every finisher of ``ledger`` (progress from ``progress_dir``), the first
    ``backlog_limit`` queued works by restore expiry, the ``failures_limit`` latest failures."""
    now = now or datetime.now(UTC)
    stages = read_stage_files(progress_dir)
    slots = [_slot(work, stages) for work in leased_works(ledger.engine)]
    slots += [Slot(s.work_rid, "ingest", s.label, f"{s.host}:{s.pid}/watch", None, None, s) for s in stages
              if s.kind == "watch" and not s.finished and now - s.updated_at <= WATCH_FRESH]
    queued = ledger.queued_works(now, STALE_AFTER)
    backlog = [BacklogEntry(q.work_rid, q.restore_expiry, (q.restore_expiry - now).total_seconds() / 3600)
               for q in queued[:backlog_limit]]
    failures = [Failure(f.work_rid, f.phase, f.cause, f.message, f.attempts, _aware(f.updated_at) or now)
                for f in recent_failures(ledger.engine, failures_limit)]
    return LiveSnapshot(now, slots, backlog, len(queued), failures, phase_counts(ledger.engine))
