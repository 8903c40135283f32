"""Sync options: merge order, typing, named rejection of invalid files, and the script's command/environment."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onprem.finisher.errors import PermanentError, SyncConfigInvalid
from onprem.finisher.sync.options import (
    SyncOptions,
    allowed_work_options,
    deep_merge,
    default_options,
    load_sync_options,
    merge_options,
)
from onprem.finisher.sync.stage import build_command, build_environment, job_environment


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    work = tmp_path / "staging" / "W1FPL2251"
    work.mkdir(parents=True)
    return work


def load(work_dir: Path, config_dir: Path | None) -> SyncOptions:
    return load_sync_options(work_dir, "W1FPL2251", config_dir=config_dir, web_parent=None)


def test_deep_merge_merges_mappings_and_replaces_lists_and_scalars() -> None:
    base = {"audit": {"pre": ["-a"], "post": ["-b"]}, "sync": {"replace": False}}
    merged = deep_merge(base, {"audit": {"pre": ["-c"]}, "sync": {"replace": True}})
    assert merged == {"audit": {"pre": ["-c"], "post": ["-b"]}, "sync": {"replace": True}}
    assert base["audit"]["pre"] == ["-a"]


def test_defaults_come_from_the_settings(work_dir: Path) -> None:
    options = load(work_dir, None)
    assert options.sync.web is None
    assert options.sync.replace is False and options.sync.update_web is True
    assert options.audit.pre == [] and options.audit.post == []


def test_site_file_overrides_defaults(work_dir: Path, tmp_path: Path) -> None:
    write(tmp_path / "etc" / "site-sync.yml", "sync:\n  web: s3://web/works\n  replace: true\naudit:\n  pre: [-s]\n")
    options = load(work_dir, tmp_path / "etc")
    assert options.sync.web == "s3://web/works" and options.sync.replace is True
    assert options.audit.pre == ["-s"]


def test_work_file_sets_only_the_audit_arguments(
    work_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    write(tmp_path / "etc" / "site-sync.yml", "sync:\n  web: s3://web/works\n  replace: true\naudit:\n  pre: [-s]\n"
                                             "  post: [-p]\n")
    path = write(work_dir / "config" / "sync.yml",
                 "sync:\n  replace: false\n  update_web: false\naudit:\n  pre: [-w, -x]\n")
    caplog.set_level(logging.WARNING, logger="onprem.finisher.sync.options")
    options = load(work_dir, tmp_path / "etc")
    assert options.sync.web == "s3://web/works"
    assert options.sync.replace is True and options.sync.update_web is True
    assert options.audit.pre == ["-w", "-x"] and options.audit.post == ["-p"]
    [record] = caplog.records
    assert record.work_rid == "W1FPL2251" and record.file == str(path)
    assert record.ignored_keys == ["sync.replace", "sync.update_web"]
    assert f"W1FPL2251: ignored in the work's own {path}: sync.replace, sync.update_web" in record.getMessage()


@pytest.mark.parametrize(("text", "ignored"), [
    ("sync:\n  archive: null\n", ["sync.archive"]),
    ("sync:\n  archive: /other/dir\n  web: s3://theirs/x\n", ["sync.archive", "sync.web"]),
    ("sync: {replace: true}\nsynk: {}\naudit: [-x]\n", ["sync.replace", "synk", "audit"]),
    ("audit:\n  pre: [-q]\n  everything: true\n", ["audit.everything"]),
])
def test_a_work_file_never_sets_targets_or_policy(work_dir: Path, text: str, ignored: list[str]) -> None:
    import yaml

    write(work_dir / "config" / "sync.yml", text)
    assert load(work_dir, None).sync == SyncOptions().sync
    assert allowed_work_options(yaml.safe_load(text))[1] == ignored


def test_the_site_file_cannot_set_the_archive_root(work_dir: Path, tmp_path: Path) -> None:
    site = write(tmp_path / "etc" / "site-sync.yml", "sync:\n  archive: /mnt/elsewhere\n")
    with pytest.raises(SyncConfigInvalid, match=re.escape(f"{site}: sync.archive: Extra inputs")):
        load(work_dir, tmp_path / "etc")


def test_empty_files_change_nothing(work_dir: Path, tmp_path: Path) -> None:
    write(tmp_path / "etc" / "site-sync.yml", "")
    write(work_dir / "config" / "sync.yml", "# nothing\n")
    assert load(work_dir, tmp_path / "etc") == load(work_dir, None)


@pytest.mark.parametrize(("text", "key"), [
    ("audit:\n  pre: -x\n", "audit.pre"),
    ("audit:\n  post: [-x, 3]\n", "audit.post.1"),
    ("audit:\n  pre: ['-c my config']\n", "audit.pre"),
])
def test_invalid_work_file_is_rejected_naming_file_and_key(work_dir: Path, text: str, key: str) -> None:
    path = write(work_dir / "config" / "sync.yml", text)
    with pytest.raises(SyncConfigInvalid) as caught:
        load(work_dir, None)
    message = str(caught.value)
    assert message.startswith("W1FPL2251: invalid sync options in ")
    assert str(path) in message and f"{key}:" in message
    assert isinstance(caught.value, PermanentError)


@pytest.mark.parametrize(("text", "key"), [
    ("sync:\n  replace: maybe\n", "sync.replace"),
    ("sync:\n  replce: true\n", "sync.replce"),
    ("sync:\n  web: web-bucket/prefix\n", "sync.web"),
    ("synk: {}\n", "synk"),
])
def test_invalid_site_file_is_rejected_naming_file_and_key(work_dir: Path, tmp_path: Path, text: str,
                                                           key: str) -> None:
    path = write(tmp_path / "etc" / "site-sync.yml", text)
    with pytest.raises(SyncConfigInvalid, match=re.escape(f"W1FPL2251: invalid sync options in {path}: {key}:")):
        load(work_dir, tmp_path / "etc")


def test_invalid_site_file_is_named_not_the_work_file(work_dir: Path, tmp_path: Path) -> None:
    site = write(tmp_path / "etc" / "site-sync.yml", "sync:\n  update_web: [1]\n")
    write(work_dir / "config" / "sync.yml", "sync:\n  replace: true\n")
    with pytest.raises(SyncConfigInvalid, match=re.escape(f"{site}: sync.update_web")):
        load(work_dir, tmp_path / "etc")


def test_unparsable_yaml_is_rejected_with_the_file(work_dir: Path) -> None:
    path = write(work_dir / "config" / "sync.yml", "sync: [unclosed\n")
    with pytest.raises(SyncConfigInvalid, match=re.escape(f"W1FPL2251: unreadable sync options file {path}")):
        load(work_dir, None)


def test_a_top_level_list_is_rejected(work_dir: Path) -> None:
    write(work_dir / "config" / "sync.yml", "- sync\n")
    with pytest.raises(SyncConfigInvalid, match=r"\(top level\): expected a mapping"):
        load(work_dir, None)


def options(**sync: object) -> SyncOptions:
    return merge_options(default_options(None), [("test", {"sync": sync})], "W1FPL2251")


def test_command_maps_options_to_flags() -> None:
    args = build_command(Path("/bin/s.sh"), Path("/st/W1"), Path("/arch"), options(web="s3://w/p", replace=True),
                         Path("/ok"))
    assert args == ["/bin/s.sh", "-A", "-W", "-a", "/arch", "-w", "s3://w/p", "-s", "/ok", "/st/W1"]


def test_command_always_replaces_the_archive_copy_and_never_only_audits() -> None:
    args = build_command(Path("/bin/s.sh"), Path("/st/W1"), Path("/arch"), options(replace=False), Path("/ok"))
    assert args == ["/bin/s.sh", "-A", "-a", "/arch", "-s", "/ok", "/st/W1"]


def test_environment_carries_audit_options_and_switches() -> None:
    opts = merge_options(default_options(None),
                         [("t", {"audit": {"pre": ["-c", "x.yml"], "post": ["-r"]}, "sync": {"update_web": False}})],
                         "W1")
    env = build_environment(opts, {"jobDate": "2026-11-29"}, audit_required=True, base={"PATH": "/bin"})
    assert env["LOCAL_AUDIT_OPTIONS"] == "-c x.yml" and env["REPO_AUDIT_OPTIONS"] == "-r"
    assert env["NO_REFRESH_WEB"] == "Yes" and env["AUDIT_REQUIRED"] == "1"
    assert env["PATH"] == "/bin" and env["jobDate"] == "2026-11-29"


def test_job_environment_names_per_run_log_paths() -> None:
    env = job_environment("W1FPL2251", Path("/logs"), datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC))
    assert env == {
        "jobDateTime": "2026-11-29_01-02-03", "jobDate": "2026-11-29", "jobTime": "01-02-03",
        "syncLogDateTimeDir": "/logs/sync/2026-11-29_01-02-03",
        "syncLogDateTimeFile": "/logs/sync/2026-11-29_01-02-03/W1FPL2251.log",
        "syncLogTempDir": "/logs/sync/2026-11-29_01-02-03/tmp",
        "auditToolLogDateTimeDir": "/logs/audit/2026-11-29_01-02-03",
    }
