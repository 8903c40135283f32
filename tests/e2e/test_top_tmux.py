"""``finisher top`` as a person uses it: in a terminal (tmux) beside a running ``finisher run`` process, against a
loopback moto server whose downloads go through ``harness/proxy.py`` capped at 384 KiB/s, so a 4 MiB work is caught
mid-download. The pane is captured (``tmux capture-pane -p``) and read: the work in its slot with its phase and
bytes, the backlog's row, the failure of a bad zip with its cause and the member name holding ``[b]``/``[/draft]``
printed as it is. ``top --json`` in the test's own process (a third one) reads the same; SIGTERM ends top."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.bags import make_streamed_bag_zip, zip_entries
from harness.proxy import ShapingProxy
from onprem.finisher.cli.app import app
from onprem.finisher.logs import reset_logging
from tests.e2e.test_finisher_process import REPO_ROOT, Clients, server, wait_for
from tests.integration.worker_support import BUCKET, DLQ, QUEUE, REGION, stage_object

__all__ = ["server"]  # the moto server fixture, shared with test_finisher_process.py

SLOW, BAD, QUEUED = "W1NLM4700", "W1NLM4701", "W22084"
BRACKETED = "../[b]x[/draft].tif"
FINISHER = [sys.executable, "-c", "from onprem.finisher.cli.app import main; main()"]


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    """A tmux server of this test's own (its own socket), killed at the end."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (make installs it)")
    command = ["tmux", "-L", f"top-test-{uuid.uuid4().hex[:8]}"]
    yield command
    subprocess.run([*command, "kill-server"], capture_output=True, check=False)


def _reset(clients: Clients) -> None:
    """moto's state is the process's: another test of this process may have left messages in the same queues (in
    flight ones come back in the middle of it), and this one leaves two in flight when it kills the finisher."""
    urllib.request.urlopen(urllib.request.Request(f"{clients.endpoint}/moto-api/reset", method="POST"), timeout=10)


def _fresh(clients: Clients) -> None:
    """The server's resources made again from nothing (``_reset``)."""
    _reset(clients)
    s3 = clients.s3(REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for name in (DLQ, QUEUE):
        clients.client("sqs", REGION).create_queue(QueueName=name)


def _send(clients: Clients, *works: Any) -> None:
    sqs = clients.client("sqs", REGION)
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for work in works:
        sqs.send_message(QueueUrl=url, MessageBody=work.to_body())


def _stage_works(clients: Clients, tmp_path: Path) -> None:
    """The bad zip expires first (taken first), then the slow one; the third waits in the backlog (1 slot)."""
    bags = tmp_path / "bags"
    slow = make_streamed_bag_zip(bags, SLOW, total_bytes=4 << 20, file_bytes=512 << 10).path
    bags.joinpath("bad").mkdir()
    bad = zip_entries(bags / "bad" / f"{BAD}.bag.zip", [(f"{BAD}.bag/bagit.txt", b"x"),
                                                        (f"{BAD}.bag/data/{BRACKETED}", b"y")])
    queued = make_streamed_bag_zip(bags / "queued", QUEUED, total_bytes=64 << 10, file_bytes=32 << 10).path
    _send(clients, stage_object(clients, bad, BAD, expiry_days=1),  # type: ignore[arg-type]
          stage_object(clients, slow, SLOW, expiry_days=2),  # type: ignore[arg-type]
          stage_object(clients, queued, QUEUED, expiry_days=9))  # type: ignore[arg-type]


def _pane(tmux: list[str]) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], capture_output=True, text=True,
                          check=False).stdout


def _start_top(tmux: list[str], tmp_path: Path, env: dict[str, str]) -> None:
    """``finisher top`` in a detached tmux pane of 230 by 50, with the finisher's environment."""
    # the terminal's own size, not one the test runner's environment (tmux's global one) carries
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k not in ("COLUMNS", "LINES"))
    script = tmp_path / "top.sh"
    # its pid and exit status written beside it: what a SIGTERM did to it is read from there
    script.write_text(f"{exports}unset COLUMNS LINES\ncd {shlex.quote(str(REPO_ROOT))}\n"
                      f"{shlex.join(FINISHER)} top --interval 0.3 &\necho $! > {tmp_path / 'top.pid'}\n"
                      f"wait $!\necho $? > {tmp_path / 'top.exit'}\n")
    subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "230", "-y", "50", f"sh {script}"], check=True)


def _line(pane: str, *parts: str) -> str | None:
    """The first line of the pane holding every one of ``parts``."""
    return next((line for line in pane.splitlines() if all(part in line for part in parts)), None)


def test_top_in_a_terminal_shows_the_slot_mid_download_the_backlog_and_a_failure_with_its_cause(
        tmp_path: Path, server: tuple[Clients, dict[str, str]], tmux: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    clients, env = server
    _fresh(clients)
    _stage_works(clients, tmp_path)
    moto_port = int(clients.endpoint.rsplit(":", 1)[1])
    with ShapingProxy("127.0.0.1", moto_port, rate_bytes_per_s=384 << 10) as proxy, \
            (tmp_path / "run.log").open("w") as log:
        env = {**env, "AWS_ENDPOINT_URL": proxy.url, "FINISHER_CONCURRENCY": "1", "FINISHER_FETCH_CONCURRENCY": "1"}
        run = subprocess.Popen([*FINISHER, "run"], env=env, cwd=REPO_ROOT, stdout=log, stderr=log)
        try:
            _start_top(tmux, tmp_path, env)
            seen: list[str] = []

            def shown() -> str | None:
                """The pane once one frame shows everything (a capture may land while Live redraws: wait for a
                whole frame rather than assert on a torn one)."""
                seen.append(pane := _pane(tmux))
                wanted = (_line(pane, SLOW, "restore_completed", "download", "4.0 MiB", "%", "KiB/s"),
                          _line(pane, QUEUED, "UTC"), _line(pane, BAD, "failed", "unsafe_member_path", BRACKETED),
                          _line(pane, "1 in slots, 1 queued, 0 synced, 1 failed"))
                return pane if all(wanted) else None

            try:
                wait_for(shown, 30, "top to show the slot mid-download, the backlog and the failure")
            except AssertionError as err:
                tail = (tmp_path / "run.log").read_text()[-3000:]
                raise AssertionError(f"{err}; the pane showed:\n{seen[-1] if seen else ''}\nthe finisher's log "
                                     f"ends:\n{tail}") from None

            for name in ("BDRC_ENV_FILE", "AWS_ENDPOINT_URL"):  # this process reads as a third one: no start-up
                monkeypatch.setenv(name, env[name])
            result = CliRunner().invoke(app, ["top", "--json"])
            assert result.exit_code == 0, result.output
            snapshot = json.loads(result.stdout)
            [taken] = snapshot["slots"]
            assert taken["work_rid"] == SLOW and taken["stage"]["label"] == "download"
            assert 0 < taken["stage"]["bytes_done"] < taken["stage"]["total_bytes"] <= taken["size"]  # the zip's ranges
            assert [entry["work_rid"] for entry in snapshot["backlog"]] == [QUEUED]
            assert [(f["work_rid"], f["cause"]) for f in snapshot["failures"]] == [(BAD, "unsafe_member_path")]

            os.kill(int((tmp_path / "top.pid").read_text()), signal.SIGTERM)  # ends top like Ctrl-C
            exit_file = tmp_path / "top.exit"
            status = wait_for(lambda: exit_file.is_file() and exit_file.read_text().strip(), 10, "top to exit")
            assert status == "0"  # its own exit, not killed by the signal (143)
        finally:
            run.kill()
            run.wait(10)
            reset_logging()
            _reset(clients)
