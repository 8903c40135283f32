"""The finisher processes of test_finisher_process.py: ``python -m tests.e2e.test_finisher_process_stages run …``
is ``finisher run …`` on these stages (``cli.app.main(stages_for=slow_stages)``).

The real stages with a slow, interruptible prelude to the fetch + de-bag: it works in small units for
FINISHER_TEST_SLOW_S seconds, checking the cancel token, and appends ``start``/``end`` lines to
``<state>/stage-log.txt`` so the test sees what each process did.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from contract import RestoredWork
from onprem.finisher.cli.app import main as finisher_main
from onprem.finisher.debag.model import StagedWork
from onprem.finisher.work.settings import Settings
from onprem.finisher.work.stages import Fetched, StageContext, Stages
from onprem.finisher.work.wiring import real_stages


def slow_stages(settings: Settings, s3_client_for: Callable[[str], Any]) -> Stages:
    """The real stages with a slow, interruptible prelude to the fetch + de-bag (used inside the finisher process)."""
    real = real_stages(settings, s3_client_for)
    slow_s = float(os.environ.get("FINISHER_TEST_SLOW_S", "0"))
    log = settings.state_dir / "stage-log.txt"

    def note(what: str, rid: str) -> None:
        with log.open("a", encoding="utf-8") as out:
            out.write(f"{what} {rid} {os.getpid()} {time.time():.3f}\n")

    def fetch_debag(work: RestoredWork, ctx: StageContext) -> tuple[Fetched, list[StagedWork]]:
        note("start", work.work_rid)
        try:
            deadline = time.monotonic() + slow_s
            while time.monotonic() < deadline:
                ctx.cancel.check()
                time.sleep(0.02)
            return real.fetch_debag(work, ctx)
        finally:
            note("end", work.work_rid)

    return Stages(fetch_debag=fetch_debag, debag=real.debag, sync=real.sync, works_dir=real.works_dir)


def main() -> None:
    """``finisher`` on the slow stages (each subprocess of test_finisher_process.py runs this)."""
    finisher_main(stages_for=slow_stages)


if __name__ == "__main__":
    main()
