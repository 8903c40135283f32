"""The progress reporter: log lines at an interval off a terminal, a rich bar on one."""

from __future__ import annotations

import io
import logging

import pytest

from onprem.finisher.progress import LogProgress, RichProgress, make_progress


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_progress_logs_once_per_interval_and_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    progress = LogProgress("downloading", "W1NLM4700", interval=10, clock=clock)
    progress.start(total_bytes=4 * 2**20, total_files=4)
    with caplog.at_level(logging.INFO, logger="onprem.finisher.progress"):
        for _ in range(4):
            clock.now += 6
            progress.advance(2**20, files=1)
        progress.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # at 12 s, at 24 s, and the final line
    assert lines[-1].startswith("W1NLM4700: downloading 4/4 files, 4/4 MiB")
    assert caplog.records[-1].work_rid == "W1NLM4700"


def test_make_progress_logs_when_stderr_is_not_a_terminal() -> None:
    assert isinstance(make_progress("de-bagging", "W1", stream=io.StringIO()), LogProgress)


def test_make_progress_draws_a_bar_on_a_terminal() -> None:
    stream = _Tty()
    progress = make_progress("de-bagging", "W1", stream=stream)
    assert isinstance(progress, RichProgress)
    progress.start(total_bytes=100, total_files=2)
    progress.advance(100, files=2)
    progress.finish()
    assert "W1 de-bagging 2/2 files" in stream.getvalue()
