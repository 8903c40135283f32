"""The finisher's sync stage end to end: sync_work runs the real bin/syncOneWork.sh with real rsync."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onprem.finisher.errors import (
    HookFailed,
    PermanentError,
    RetryableError,
    SyncConfigInvalid,
    SyncFailed,
    SyncRefused,
)
from onprem.finisher.sync import SyncResult, SyncSettings, run_post_sync_hook, sync_work

#: rsync, bash and coreutils, but no audit-tool unless a test writes one
SYSTEM_PATH = os.pathsep.join(dict.fromkeys([str(Path(shutil.which("rsync") or "/usr/bin/rsync").parent), "/usr/bin",
                                             "/bin"]))
JOB_VARIABLES = ("jobDateTime", "jobDate", "jobTime", "syncLogDateTimeDir", "syncLogDateTimeFile", "syncLogTempDir",
                 "auditToolLogDateTimeDir")
NOW = datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC)
FILES = {"images/W1FPL2251-I1KG1/0001.tif": "one", "archive/W1FPL2251-I1KG1/0001.tif": "master",
         "W1FPL2251.bag/bagit.txt": "BagIt-Version: 1.0\n"}


def make_work(parent: Path, rid: str, files: dict[str, str]) -> Path:
    work = parent / rid
    for relpath, content in files.items():
        path = work / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    work.mkdir(parents=True, exist_ok=True)
    return work


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def audit_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stub audit-tool in PATH recording its arguments and the job variables of the script's environment."""
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    record = tmp_path / "audit.txt"
    lines = "".join(f'echo "{name}=${{{name}:-}}" >> {record}\n' for name in JOB_VARIABLES)
    stub = fakebin / "audit-tool"
    stub.write_text(f'#!/bin/bash\necho "args=$*" >> {record}\n{lines}')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakebin}:{SYSTEM_PATH}")
    return record


@pytest.fixture
def settings(tmp_path: Path) -> SyncSettings:
    return SyncSettings(archive_root=tmp_path / "archive", log_dir=tmp_path / "logs", config_dir=tmp_path / "etc")


def test_sync_work_puts_the_work_in_the_archive_and_removes_staging(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    work = make_work(tmp_path / "staging", "W1FPL2251", FILES)
    result = sync_work(work, "W1FPL2251", settings, now=NOW)
    archive_path = tmp_path / "archive/Archive2/51/W1FPL2251"
    assert isinstance(result, SyncResult)
    assert (result.work_rid, result.exit_code, result.archive_path, result.copy_mode) == (
        "W1FPL2251", 0, archive_path, "link")
    assert result.staging_removed and not work.exists() and result.duration > 0
    assert tree(archive_path) == FILES
    assert result.log_path == tmp_path / "logs/sync/2026-11-29_01-02-03/W1FPL2251.log"
    log = result.log_path.read_text()
    assert "syncOneWork: W1FPL2251: archive: copy_mode=link" in log and "W1FPL2251: done: ok" in log
    assert (tmp_path / "logs/synced-works.txt").read_text() == "W1FPL2251\n"


def test_script_environment_has_the_job_variables(settings: SyncSettings, tmp_path: Path, audit_record: Path) -> None:
    sync_work(make_work(tmp_path / "staging", "W1FPL2251", FILES), "W1FPL2251", settings, now=NOW)
    lines = audit_record.read_text().splitlines()
    recorded = dict(line.split("=", 1) for line in lines if not line.startswith("args="))
    logs = tmp_path / "logs"
    assert recorded == {
        "jobDateTime": "2026-11-29_01-02-03", "jobDate": "2026-11-29", "jobTime": "01-02-03",
        "syncLogDateTimeDir": f"{logs}/sync/2026-11-29_01-02-03",
        "syncLogDateTimeFile": f"{logs}/sync/2026-11-29_01-02-03/W1FPL2251.log",
        "syncLogTempDir": f"{logs}/sync/2026-11-29_01-02-03/tmp",
        "auditToolLogDateTimeDir": f"{logs}/audit/2026-11-29_01-02-03",
    }


def test_output_goes_to_the_logger_with_the_work_rid(
    settings: SyncSettings, tmp_path: Path, audit_record: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="onprem.finisher.sync")
    sync_work(make_work(tmp_path / "staging", "W1FPL2251", FILES), "W1FPL2251", settings, now=NOW)
    messages = [(r.getMessage(), r.work_rid) for r in caplog.records]
    assert any("copy_mode=link" in message and rid == "W1FPL2251" for message, rid in messages)
    assert all(rid == "W1FPL2251" for _, rid in messages)


def test_site_and_work_options_reach_the_script(settings: SyncSettings, tmp_path: Path, audit_record: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/site-sync.yml").write_text("audit:\n  pre: [--site]\n  post: [--repo]\n")
    work = make_work(tmp_path / "staging", "W1FPL2251", {**FILES, "config/sync.yml": "audit:\n  pre: [--work, -v]\n"})
    sync_work(work, "W1FPL2251", settings, now=NOW)
    args = [line for line in audit_record.read_text().splitlines() if line.startswith("args=")]
    assert args == [f"args=--work -v {work}", f"args=--repo {tmp_path / 'archive/Archive2/51/W1FPL2251'}"]


def test_replace_option_mirrors_the_work(settings: SyncSettings, tmp_path: Path, audit_record: Path) -> None:
    sync_work(make_work(tmp_path / "staging", "W1FPL2251", FILES), "W1FPL2251", settings, now=NOW)
    smaller = {"images/W1FPL2251-I1KG1/0001.tif": "one v2", "config/sync.yml": "sync:\n  replace: true\n"}
    sync_work(make_work(tmp_path / "staging", "W1FPL2251", smaller), "W1FPL2251", settings, now=NOW)
    assert tree(tmp_path / "archive/Archive2/51/W1FPL2251") == smaller


def test_invalid_work_options_stop_before_the_script(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    work = make_work(tmp_path / "staging", "W1FPL2251", {**FILES, "config/sync.yml": "sync:\n  replace: 7\n"})
    with pytest.raises(SyncConfigInvalid, match=r"sync\.replace"):
        sync_work(work, "W1FPL2251", settings, now=NOW)
    assert work.exists() and not audit_record.exists()


def test_failed_sync_raises_sync_failed_and_keeps_staging(
    settings: SyncSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    work = make_work(tmp_path / "staging", "W1FPL2251", FILES)
    required = settings.model_copy(update={"audit_required": True})
    with pytest.raises(SyncFailed) as caught:
        sync_work(work, "W1FPL2251", required, now=NOW)
    err = caught.value
    assert isinstance(err, RetryableError)
    assert err.exit_code == 4 and err.log_path.is_file()
    assert str(err).startswith("W1FPL2251: syncOneWork.sh exited 4 (audit before the sync failed)")
    assert "AUDIT_REQUIRED=1" in str(err) and str(err.log_path) in str(err)
    assert work.exists() and not (tmp_path / "archive/Archive2/51/W1FPL2251").exists()


def test_replace_of_an_empty_work_is_refused_permanently(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    work = make_work(tmp_path / "staging", "W1FPL2251", {"config/sync.yml": "sync:\n  replace: true\n"})
    with pytest.raises(SyncRefused) as caught:
        sync_work(work, "W1FPL2251", settings, now=NOW)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.exit_code == 6
    assert str(caught.value).startswith("W1FPL2251: syncOneWork.sh exited 6")
    assert not (tmp_path / "archive/Archive2/51/W1FPL2251").exists()


def test_failed_sync_removes_staging_when_asked(
    settings: SyncSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    work = make_work(tmp_path / "staging", "W1FPL2251", FILES)
    strict = settings.model_copy(update={"audit_required": True, "keep_staging_on_failure": False})
    with pytest.raises(SyncFailed):
        sync_work(work, "W1FPL2251", strict, now=NOW)
    assert not work.exists()


def test_sync_over_its_timeout_is_terminated_and_the_archive_untouched(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    hanging = tmp_path / "fakebin" / "rsync"
    hanging.write_text("#!/bin/bash\nexec sleep 60\n")
    hanging.chmod(0o755)
    work = make_work(tmp_path / "staging", "W1FPL2251", FILES)
    with pytest.raises(SyncFailed, match=r"exited 143 \(timed out after 0\.5 s, terminated\)") as caught:
        sync_work(work, "W1FPL2251", settings.model_copy(update={"timeout_s": 0.5}), now=NOW)
    assert caught.value.exit_code == 143
    parent = tmp_path / "archive/Archive2/51"
    assert work.exists() and sorted(p.name for p in parent.iterdir()) == []


def hook_writing_to(target: Path, exit_code: int = 0) -> list[str]:
    code = f"import sys; open({str(target)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n'); sys.exit({exit_code})"
    return [sys.executable, "-c", code, "{work_rid}", "{archive_path}"]


def test_post_sync_hook_runs_with_placeholders(settings: SyncSettings, tmp_path: Path, audit_record: Path) -> None:
    calls = tmp_path / "hook.txt"
    with_hook = settings.model_copy(update={"post_sync_hook": hook_writing_to(calls)})
    result = sync_work(make_work(tmp_path / "staging", "W1FPL2251", FILES), "W1FPL2251", with_hook, now=NOW)
    assert calls.read_text() == f"W1FPL2251 {result.archive_path}\n"
    assert result.hook is not None and result.hook.exit_code == 0


def test_failed_hook_keeps_the_sync_result_and_is_retried_alone(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    calls = tmp_path / "hook.txt"
    failing = settings.model_copy(update={"post_sync_hook": hook_writing_to(calls, exit_code=3)})
    work = make_work(tmp_path / "staging", "W1FPL2251", FILES)
    with pytest.raises(HookFailed, match=r"^W1FPL2251: post-sync hook .* exited 3") as caught:
        sync_work(work, "W1FPL2251", failing, now=NOW)
    synced = caught.value.sync_result
    assert synced.exit_code == 0 and not work.exists()
    retried = run_post_sync_hook(hook_writing_to(calls), "W1FPL2251", synced.archive_path)
    assert retried.exit_code == 0
    assert calls.read_text().splitlines() == [f"W1FPL2251 {synced.archive_path}"] * 2


def test_hook_that_cannot_start_raises_hook_failed(tmp_path: Path) -> None:
    with pytest.raises(HookFailed, match="W1FPL2251: post-sync hook '/nonexistent/hook' could not run"):
        run_post_sync_hook(["/nonexistent/hook"], "W1FPL2251", tmp_path)
