"""The finisher's sync stage end to end: sync_work runs the real bin/syncOneWork.sh with real rsync."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import bagit
import pytest

from onprem.finisher.errors import (
    ArchiveCopyMismatch,
    ArchiveCopyMissing,
    ArchiveUnavailable,
    HookFailed,
    PermanentError,
    RetryableError,
    SyncConfigInvalid,
    SyncFailed,
    SyncRefused,
    WorkRidRefused,
)
from onprem.finisher.sync.stage import SyncResult, SyncSettings, run_post_sync_hook, sync_work

#: rsync, bash and coreutils, but no audit-tool unless a test writes one
SYSTEM_PATH = os.pathsep.join(dict.fromkeys([str(Path(shutil.which("rsync") or "/usr/bin/rsync").parent), "/usr/bin",
                                             "/bin"]))
JOB_VARIABLES = ("jobDateTime", "jobDate", "jobTime", "syncLogDateTimeDir", "syncLogDateTimeFile", "syncLogTempDir",
                 "auditToolLogDateTimeDir")
NOW = datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC)
#: a plain work (no bag): compared with the staged copy; bags are built by make_staged_bag
FILES = {"images/W1FPL2251-I1KG1/0001.tif": "one", "archive/W1FPL2251-I1KG1/0001.tif": "master",
         "sources/notes.txt": "notes"}


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


def make_staged_bag(parent: Path, rid: str, payload: dict[str, str]) -> Path:
    """A work staged as the de-bag leaves it: the payload at ``<rid>/``, bagit's tag files in ``<rid>/<rid>.bag/``."""
    build = parent / "bagit-build" / rid
    make_work(build.parent, rid, payload)
    bagit.make_bag(str(build), {"BDRC-RID": rid}, processes=1, checksums=["sha256"])
    work = parent / rid
    (build / "data").rename(work)
    build.rename(work / f"{rid}.bag")
    build.parent.rmdir()
    return work


@pytest.fixture
def settings(tmp_path: Path) -> SyncSettings:
    (tmp_path / "archive").mkdir()
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
    caplog.set_level(logging.DEBUG, logger="onprem.finisher.sync.stage")
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


def test_re_restore_replaces_the_archive_copy_old_files_do_not_survive(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    first = {"images/W1FPL2251-I1KG1/0001.tif": "one", "images/W1FPL2251-I1KG1/0002.tif": "two"}
    sync_work(make_staged_bag(tmp_path / "staging", "W1FPL2251", first), "W1FPL2251", settings, now=NOW)
    smaller = {"images/W1FPL2251-I1KG1/0001.tif": "one v2"}
    work = make_staged_bag(tmp_path / "staging", "W1FPL2251", smaller)
    staged = tree(work)
    sync_work(work, "W1FPL2251", settings, now=NOW)
    archived = tree(tmp_path / "archive/Archive2/51/W1FPL2251")
    assert archived == staged and "images/W1FPL2251-I1KG1/0002.tif" not in archived
    assert "data/images/W1FPL2251-I1KG1/0002.tif" not in archived["W1FPL2251.bag/manifest-sha256.txt"]


@pytest.mark.parametrize("work_file", [
    "sync:\n  archive: null\n",
    "sync:\n  archive: {other}\n",
    "sync:\n  web: s3://someone-elses-bucket/works\n  replace: true\n  update_web: true\n",
    "sync:\n  replace: false\nsomething_else: 1\n",
], ids=["archive_null", "archive_elsewhere", "web_and_replace", "unknown_keys"])
def test_a_works_own_sync_file_never_decides_where_it_goes(
    settings: SyncSettings, tmp_path: Path, audit_record: Path, caplog: pytest.LogCaptureFixture, work_file: str,
) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    archive_path = tmp_path / "archive/Archive2/51/W1FPL2251"
    sync_work(make_work(tmp_path / "staging", "W1FPL2251", FILES), "W1FPL2251", settings, now=NOW)
    (archive_path / "sources/old.txt").write_text("from the previous restore")
    payload = {**FILES, "config/sync.yml": work_file.format(other=other)}
    caplog.set_level(logging.WARNING, logger="onprem.finisher.sync.options")
    result = sync_work(make_work(tmp_path / "staging", "W1FPL2251", payload), "W1FPL2251", settings, now=NOW)
    assert result.archive_path == archive_path and tree(archive_path) == payload
    assert list(other.iterdir()) == []
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].work_rid == "W1FPL2251"
    assert "config/sync.yml" in warned[0].getMessage() and "ignored" in warned[0].getMessage()


def test_invalid_work_options_stop_before_the_script(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    work = make_work(tmp_path / "staging", "W1FPL2251", {**FILES, "config/sync.yml": "audit:\n  pre: -x\n"})
    with pytest.raises(SyncConfigInvalid, match=r"config/sync\.yml: audit\.pre"):
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


def test_replace_of_a_work_that_is_not_a_work_is_refused_permanently(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    work = make_work(tmp_path / "staging", "W1FPL2251", {"readme.txt": "no images, no bag"})
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
    for builder in ("cp", "rsync"):  # what links the copy (one filesystem), what copies it (two)
        hanging = tmp_path / "fakebin" / builder
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


# --- the archive copy is verified before the staging copy goes ------------------------------------------------
def audit_post_running(fakebin: Path, script: str) -> None:
    """An audit-tool whose post-sync call (on the archive copy, ``$last``) runs ``script``: damage after the sync."""
    stub = fakebin / "audit-tool"
    stub.write_text(f'#!/bin/bash\nfor last; do :; done\n[[ $1 == --post ]] || exit 0\n{script}\n')
    stub.chmod(0o755)


@pytest.fixture
def post_settings(settings: SyncSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SyncSettings:
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    monkeypatch.setenv("PATH", f"{fakebin}:{SYSTEM_PATH}")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/site-sync.yml").write_text("audit:\n  post: [--post]\n")
    return settings


PAYLOAD = {"images/W1FPL2251-I1KG1/0001.tif": "one", "images/W1FPL2251-I1KG1/0002.tif": "two"}


@pytest.mark.parametrize("copy_mode", ["link", "copy"])
def test_a_bag_is_verified_against_its_manifest_in_the_archive(
    post_settings: SyncSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_mode: str,
) -> None:
    if copy_mode == "copy":
        monkeypatch.setenv("SYNC_FORCE_COPY", "1")
    audit_post_running(tmp_path / "fakebin", "exit 0")
    work = make_staged_bag(tmp_path / "staging", "W1FPL2251", PAYLOAD)
    result = sync_work(work, "W1FPL2251", post_settings, now=NOW)
    assert result.copy_mode == copy_mode and result.verified_files == 2 + 4  # payload + bagit, bag-info, manifests
    assert not work.exists()


@pytest.mark.parametrize("copy_mode", ["link", "copy"])
def test_an_archive_file_changed_after_the_script_fails_the_stage_and_keeps_staging(
    post_settings: SyncSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_mode: str,
) -> None:
    if copy_mode == "copy":
        monkeypatch.setenv("SYNC_FORCE_COPY", "1")
    # a new file of the same size in place of the archived one (the staged inode keeps the old bytes)
    audit_post_running(tmp_path / "fakebin", 'f=$last/images/W1FPL2251-I1KG1/0002.tif; rm "$f"; printf TWO > "$f"')
    work = make_staged_bag(tmp_path / "staging", "W1FPL2251", PAYLOAD)
    with pytest.raises(ArchiveCopyMismatch) as caught:
        sync_work(work, "W1FPL2251", post_settings, now=NOW)
    message = str(caught.value)
    assert isinstance(caught.value, PermanentError) and caught.value.cause == "archive_copy_mismatch"
    assert message.startswith("W1FPL2251: ") and "images/W1FPL2251-I1KG1/0002.tif" in message
    assert "sha256" in message and "in the archive copy" in message and "in the manifest" in message
    assert work.exists()


def test_a_file_added_to_the_archive_copy_fails_the_stage(post_settings: SyncSettings, tmp_path: Path) -> None:
    audit_post_running(tmp_path / "fakebin", 'printf x > "$last/images/stray.tif"')
    work = make_staged_bag(tmp_path / "staging", "W1FPL2251", PAYLOAD)
    with pytest.raises(ArchiveCopyMismatch, match=r"images/stray\.tif.*not in the staged work"):
        sync_work(work, "W1FPL2251", post_settings, now=NOW)
    assert work.exists()


def test_a_plain_work_changed_in_the_archive_fails_the_stage(post_settings: SyncSettings, tmp_path: Path) -> None:
    audit_post_running(tmp_path / "fakebin", 'rm "$last/sources/notes.txt"')
    work = make_work(tmp_path / "staging", "W1FPL2251", {**FILES, "sources/notes.txt": "notes"})
    with pytest.raises(ArchiveCopyMismatch, match=r"sources/notes\.txt.*missing from the archive copy"):
        sync_work(work, "W1FPL2251", post_settings, now=NOW)
    assert work.exists()


def test_a_work_missing_from_the_archive_after_the_script_fails_the_stage(
    post_settings: SyncSettings, tmp_path: Path,
) -> None:
    audit_post_running(tmp_path / "fakebin", 'mv "$last" "$last.moved"')
    work = make_work(tmp_path / "staging", "W1FPL2251", FILES)
    with pytest.raises(ArchiveCopyMissing, match=r"W1FPL2251: not in the archive at .*Archive2/51/W1FPL2251"):
        sync_work(work, "W1FPL2251", post_settings, now=NOW)
    assert work.exists()


def test_missing_archive_root_is_retryable_and_never_created(
    settings: SyncSettings, tmp_path: Path, audit_record: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    absent = tmp_path / "unmounted" / "archive"
    work = make_work(tmp_path / "staging", "W1FPL2251", FILES)
    with pytest.raises(ArchiveUnavailable, match=rf"W1FPL2251: archive root {absent} does not exist") as caught:
        sync_work(work, "W1FPL2251", settings.model_copy(update={"archive_root": absent}), now=NOW)
    assert isinstance(caught.value, RetryableError) and caught.value.cause == "archive_unavailable"
    assert not absent.parent.exists() and work.exists()
    assert any(r.levelno == logging.ERROR and r.work_rid == "W1FPL2251" for r in caplog.records)


def test_archive_root_gone_while_the_script_runs_is_archive_unavailable(
    settings: SyncSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    stub = fakebin / "audit-tool"
    stub.write_text(f"#!/bin/bash\nrmdir {tmp_path / 'archive'}\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakebin}:{SYSTEM_PATH}")
    with pytest.raises(ArchiveUnavailable, match=r"exited 11"):
        sync_work(make_work(tmp_path / "staging", "W1FPL2251", FILES), "W1FPL2251", settings, now=NOW)


def test_a_rid_with_a_trailing_newline_is_refused_and_its_sibling_untouched(
    settings: SyncSettings, tmp_path: Path, audit_record: Path,
) -> None:
    make_work(tmp_path / "staging", "W1X", {"images/g/1.tif": "the sibling"})
    hostile = make_work(tmp_path / "staging", "W1X\n", {"images/g/1.tif": "the bag's content"})
    with pytest.raises(WorkRidRefused, match=r"^'W1X\\n': not a work RID \(control characters \\n\)") as caught:
        sync_work(hostile, "W1X\n", settings, now=NOW)
    assert isinstance(caught.value, PermanentError) and caught.value.cause == "invalid_work_rid"
    assert list((tmp_path / "archive").iterdir()) == [] and hostile.exists()


def test_a_staged_folder_not_named_after_its_work_is_refused(settings: SyncSettings, tmp_path: Path) -> None:
    work = make_work(tmp_path / "staging", "W1OTHER", FILES)
    with pytest.raises(WorkRidRefused, match=r"W1FPL2251: the staged work folder .*W1OTHER"):
        sync_work(work, "W1FPL2251", settings, now=NOW)
