"""bin/syncOneWork.sh with real rsync in temp dirs, a stub audit-tool, and a moto server for the web copy."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "bin" / "syncOneWork.sh"
REAL_RSYNC = shutil.which("rsync") or "/usr/bin/rsync"
REAL_CP = shutil.which("cp") or "/bin/cp"
#: what builds the archive copy: cp -al when staging and archive share a filesystem, rsync when forced to copy
BUILDERS = pytest.mark.parametrize("builder, env", [("cp", {}), ("rsync", {"SYNC_FORCE_COPY": "1"})],
                                   ids=["link", "copy"])
#: rsync, bash and coreutils, but no audit-tool unless a test writes one
SYSTEM_PATH = os.pathsep.join(dict.fromkeys([str(Path(REAL_RSYNC).parent), "/usr/bin", "/bin"]))
WEB_BUCKET = "web-images"


def make_work(parent: Path, rid: str, files: dict[str, str]) -> Path:
    work = parent / rid
    for relpath, content in files.items():
        path = work / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    work.mkdir(parents=True, exist_ok=True)
    return work


def rewrite(path: Path, content: str) -> None:
    """A new file in place of ``path``: after a link-mode sync the old inode is also the archive's file."""
    path.unlink(missing_ok=True)
    path.write_text(content)


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def siblings(parent: Path, rid: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{rid}."))


@pytest.fixture
def fakebin(tmp_path: Path) -> Path:
    folder = tmp_path / "fakebin"
    folder.mkdir()
    return folder


@pytest.fixture
def run(tmp_path: Path, fakebin: Path):
    """Run the script with PATH limited to the system folders (no audit-tool unless a test writes one)."""

    def _run(*args: str, env: dict[str, str] | None = None, check_rc: int | None = 0) -> subprocess.CompletedProcess:
        full_env = {"PATH": f"{fakebin}:{SYSTEM_PATH}", "HOME": str(tmp_path), "SYNC_PYTHON": sys.executable,
                    "LANG": "C.UTF-8", **(env or {})}
        proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=60,
                              start_new_session=True, check=False)
        if check_rc is not None:
            assert proc.returncode == check_rc, proc.stdout + proc.stderr
        return proc

    return _run


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """An existing archive root: the script never creates one (an unmounted mount would fill the local disk)."""
    folder = tmp_path / "archive"
    folder.mkdir()
    return folder


FIRST = {"images/W1FPL2251-I1KG1/0001.tif": "one", "images/W1FPL2251-I1KG1/0002.tif": "two",
         "archive/W1FPL2251-I1KG1/0001.tif": "master", "sources/notes.txt": "notes"}


# --- help and usage -------------------------------------------------------------------------------------------
def test_help_lists_synopsis_options_and_exit_codes(run) -> None:
    out = run("-h").stdout
    assert "syncOneWork.sh [-h] [-A] [-W] [-a archiveParent] [-w webParent] [-s successWorkList] workPath" in out
    for code, words in [("0", "success"), ("5", "archive sync failed"), ("6", "-A refused"), ("10", "lock")]:
        assert any(line.strip().startswith(code) and words in line for line in out.splitlines()), code


def test_missing_work_path_is_a_usage_error(run) -> None:
    proc = run("-a", "/nonexistent", check_rc=2)
    assert "expected exactly one workPath" in proc.stderr


def test_web_without_success_list_is_a_usage_error(run, staging: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    assert "-w needs -s" in run("-w", "s3://b/p", str(work), check_rc=2).stderr


def test_missing_work_directory_names_the_work_and_step(run, tmp_path: Path) -> None:
    proc = run("-a", str(tmp_path / "a"), str(tmp_path / "W1NLM4700"), check_rc=3)
    assert "ERROR: W1NLM4700: check:" in proc.stderr


def test_rid_with_a_trailing_newline_is_refused_not_synced_as_its_sibling(
    run, staging: Path, archive: Path,
) -> None:
    make_work(staging, "W1X", {"images/g/1.tif": "the sibling"})
    hostile = make_work(staging, "W1X\n", {"images/g/1.tif": "the bag's content"})
    proc = run("-A", "-a", str(archive), str(hostile), check_rc=3)
    assert "is not a work RID" in proc.stderr
    assert list(archive.iterdir()) == []


def test_work_path_resolving_to_another_folder_name_is_refused(run, staging: Path, archive: Path) -> None:
    other = make_work(staging, "W1OTHER", {"images/g/1.tif": "other"})
    (staging / "W1X").symlink_to(other)
    proc = run("-a", str(archive), str(staging / "W1X"), check_rc=3)
    assert "W1X: check:" in proc.stderr and "W1OTHER" in proc.stderr
    assert list(archive.iterdir()) == []


def test_missing_archive_root_is_an_error_naming_it_and_never_created(run, staging: Path, tmp_path: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    absent = tmp_path / "unmounted" / "archive"
    proc = run("-A", "-a", str(absent), str(work), check_rc=11)
    assert f"W1FPL2251: archive: archive root {absent} does not exist" in proc.stderr
    assert not absent.parent.exists()


def test_archive_root_gone_after_the_check_is_never_recreated_nor_replaced_by_the_filesystem_root(
    run, staging: Path, tmp_path: Path, fakebin: Path,
) -> None:
    archive = tmp_path / "mnt" / "archive"
    archive.mkdir(parents=True)
    # the pre-sync audit runs between the root's check and the archive step: the mount goes away meanwhile
    stub = fakebin / "audit-tool"
    stub.write_text(f"#!/bin/bash\nrmdir {archive}\n")
    stub.chmod(0o755)
    work = make_work(staging, "W1FPL2251", FIRST)
    proc = run("-A", "-a", str(archive), str(work), check_rc=11)
    assert f"archive root {archive} is gone" in proc.stderr
    assert not archive.exists() and not Path("/Archive2/51/W1FPL2251").exists()


def test_replace_accepts_a_staged_bag_without_top_level_markers(run, staging: Path, archive: Path) -> None:
    files = {"W1FPL2251-I1KG1/images/0001.tif": "one", "W1FPL2251.bag/bagit.txt": "BagIt-Version: 1.0\n"}
    run("-A", "-a", str(archive), str(make_work(staging, "W1FPL2251", files)))
    assert tree(archive / "Archive2/51/W1FPL2251") == files


# --- archive --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rid", "relpath"), [
    ("W1FPL2251", "Archive2/51/W1FPL2251"), ("W1NLM4700", "Archive0/00/W1NLM4700"), ("W22084", "Archive3/84/W22084"),
    ("W3CN27014_ABC", "Archive0/00/W3CN27014_ABC"), ("W1KG24", "Archive0/24/W1KG24"), ("W1KG25", "Archive1/25/W1KG25"),
])
def test_new_work_lands_in_the_archive_layout(run, staging: Path, archive: Path, rid: str, relpath: str) -> None:
    work = make_work(staging, rid, {"images/g/1.tif": rid})
    run("-a", str(archive), str(work))
    assert tree(archive / relpath) == {"images/g/1.tif": rid}


def test_same_filesystem_sync_hard_links_the_payload(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    out = run("-a", str(archive), str(work)).stdout
    target = archive / "Archive2/51/W1FPL2251"
    assert f"archive: copy_mode=link path={target}" in out
    assert tree(target) == FIRST
    for relpath in FIRST:
        assert (target / relpath).stat().st_ino == (work / relpath).stat().st_ino
    assert siblings(target.parent, "W1FPL2251") == []


def test_forced_copy_copies_new_files_once_and_links_unchanged_ones(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work), env={"SYNC_FORCE_COPY": "1"})
    target = archive / "Archive2/51/W1FPL2251"
    before = (target / "sources/notes.txt").stat().st_ino
    assert before != (work / "sources/notes.txt").stat().st_ino
    rewrite(work / "images/W1FPL2251-I1KG1/0003.tif", "three")
    out = run("-a", str(archive), str(work), env={"SYNC_FORCE_COPY": "1"}).stdout
    assert "copy_mode=copy" in out
    assert (target / "sources/notes.txt").stat().st_ino == before  # unchanged file: linked, not copied again
    assert tree(target) == tree(work)


def test_update_adds_and_updates_but_never_deletes(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work))
    (work / "sources/notes.txt").unlink()
    rewrite(work / "images/W1FPL2251-I1KG1/0001.tif", "one, corrected")
    rewrite(work / "images/W1FPL2251-I1KG1/0009.tif", "new")
    run("-a", str(archive), str(work))
    assert tree(archive / "Archive2/51/W1FPL2251") == {
        **FIRST, "images/W1FPL2251-I1KG1/0001.tif": "one, corrected", "images/W1FPL2251-I1KG1/0009.tif": "new"}


def test_update_never_rewrites_archive_only_files_in_place(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work), env={"SYNC_FORCE_COPY": "1"})
    old_only = make_work(staging / "old", "W1FPL2251", {"sources/old.txt": "old"})
    run("-a", str(archive), str(old_only), env={"SYNC_FORCE_COPY": "1"})
    run("-a", str(archive), str(work))
    assert tree(archive / "Archive2/51/W1FPL2251") == {**FIRST, "sources/old.txt": "old"}


def test_replace_mirrors_the_source_including_deletions(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work))
    (work / "sources/notes.txt").unlink()
    rewrite(work / "images/W1FPL2251-I1KG1/0002.tif", "two, v2")
    run("-A", "-a", str(archive), str(work))
    assert tree(archive / "Archive2/51/W1FPL2251") == tree(work)


def test_replace_refuses_an_empty_source(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work))
    empty = staging / "empty" / "W1FPL2251"
    (empty / "images").mkdir(parents=True)
    proc = run("-A", "-a", str(archive), str(empty), check_rc=6)
    assert "W1FPL2251: check: -A refused" in proc.stderr and "empty" in proc.stderr
    assert tree(archive / "Archive2/51/W1FPL2251") == FIRST


def test_replace_refuses_a_source_that_is_not_a_work(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work))
    stray = make_work(staging / "stray", "W1FPL2251", {"readme.txt": "not a work"})
    assert "not a work" in run("-A", "-a", str(archive), str(stray), check_rc=6).stderr
    assert tree(archive / "Archive2/51/W1FPL2251") == FIRST


@BUILDERS
def test_killed_sync_leaves_the_archive_unchanged_and_next_run_cleans_up(
    run, staging: Path, archive: Path, fakebin: Path, builder: str, env: dict[str, str],
) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work), env=env)
    rewrite(work / "images/W1FPL2251-I1KG1/0001.tif", "one, but much longer than before")
    rewrite(work / "images/W1FPL2251-I1KG1/0005.tif", "five")
    # a builder that copies (part of) the work into the temp sibling, then the whole sync is SIGKILLed
    killer = fakebin / builder
    real = f"{REAL_RSYNC} --max-size=4" if builder == "rsync" else REAL_CP
    killer.write_text(f'#!/bin/bash\n{real} "$@"\nkill -KILL -- -"$PPID"\n')
    killer.chmod(0o755)
    proc = run("-A", "-a", str(archive), str(work), env=env, check_rc=-signal.SIGKILL)
    parent = archive / "Archive2/51"
    assert tree(parent / "W1FPL2251") == FIRST, proc.stdout
    assert [name.split(".")[2] for name in siblings(parent, "W1FPL2251")] == ["syncing"]
    killer.unlink()
    out = run("-A", "-a", str(archive), str(work), env=env).stdout
    assert "removing stale" in out
    assert siblings(parent, "W1FPL2251") == []
    assert tree(parent / "W1FPL2251") == tree(work)


@BUILDERS
def test_terminated_sync_removes_its_temp_copy_and_keeps_the_archive(
    run, staging: Path, archive: Path, fakebin: Path, builder: str, env: dict[str, str],
) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work), env=env)
    rewrite(work / "sources/notes.txt", "notes v2")
    term = fakebin / builder
    term.write_text(f'#!/bin/bash\nkill -TERM "$PPID"\nexec {REAL_RSYNC if builder == "rsync" else REAL_CP} "$@"\n')
    term.chmod(0o755)
    proc = run("-A", "-a", str(archive), str(work), env=env, check_rc=143)
    assert "archive: copy_mode=" not in proc.stdout and "done: ok" not in proc.stdout
    assert tree(archive / "Archive2/51/W1FPL2251") == FIRST
    assert siblings(archive / "Archive2/51", "W1FPL2251") == []


def test_a_linked_copy_holding_another_inode_is_caught_and_rewritten(
    run, staging: Path, archive: Path, fakebin: Path,
) -> None:
    # a cp whose copy of one file is other bytes of the same size and mtime: only the inode tells it apart
    work = make_work(staging, "W1FPL2251", FIRST)
    bad = fakebin / "cp"
    bad.write_text(f'#!/bin/bash\n{REAL_CP} "$@" || exit\nfor last; do :; done\nf="$last/sources/notes.txt"\n'
                   'touch -r "$f" "$f.ref"; rm "$f"; printf NOTES >"$f"; touch -r "$f.ref" "$f"; rm "$f.ref"\n')
    bad.chmod(0o755)
    out = run("-A", "-a", str(archive), str(work)).stdout
    assert "verification found differences" in out
    copy = archive / "Archive2/51/W1FPL2251"
    assert tree(copy) == FIRST
    assert (copy / "sources/notes.txt").stat().st_ino == (work / "sources/notes.txt").stat().st_ino


def test_copy_with_same_size_and_mtime_but_new_content_is_caught_by_checksum(
    run, staging: Path, archive: Path,
) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work), env={"SYNC_FORCE_COPY": "1"})
    notes = work / "sources/notes.txt"
    stamp = notes.stat().st_mtime_ns
    rewrite(notes, "NOTES")
    os.utime(notes, ns=(stamp, stamp))
    out = run("-a", str(archive), str(work), env={"SYNC_FORCE_COPY": "1"}).stdout
    assert "re-syncing them by checksum" in out
    assert tree(archive / "Archive2/51/W1FPL2251") == {**FIRST, "sources/notes.txt": "NOTES"}


def test_swap_interrupted_between_renames_is_rolled_back(run, staging: Path, archive: Path) -> None:
    parent = archive / "Archive2/51"
    make_work(parent, ".W1FPL2251.previous.4242", {**FIRST, "sources/only-in-archive.txt": "keep"})
    work = make_work(staging, "W1FPL2251", {"sources/notes.txt": "notes v2"})
    out = run("-a", str(archive), str(work)).stdout
    assert "restoring" in out
    assert tree(parent / "W1FPL2251") == {
        **FIRST, "sources/only-in-archive.txt": "keep", "sources/notes.txt": "notes v2"}
    assert siblings(parent, "W1FPL2251") == []


def test_stale_previous_copy_is_removed_when_the_work_is_in_place(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work))
    make_work(archive / "Archive2/51", ".W1FPL2251.previous.77", {"x": "old"})
    run("-a", str(archive), str(work))
    assert siblings(archive / "Archive2/51", "W1FPL2251") == []


def test_concurrent_sync_of_the_same_work_is_refused(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    lock = archive / ".sync-locks" / "W1FPL2251.lock"
    lock.parent.mkdir()
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert "another sync" in run("-a", str(archive), str(work), check_rc=10).stderr
    assert not (archive / "Archive2/51/W1FPL2251").exists()


def test_success_list_gets_the_rid_only_when_everything_succeeded(run, staging: Path, archive: Path) -> None:
    success = staging.parent / "success.txt"
    work = make_work(staging, "W1FPL2251", FIRST)
    other = make_work(staging, "W1NLM4700", {"images/g/1.tif": "x"})
    run("-a", str(archive), "-s", str(success), str(work))
    run("-a", str(archive), "-s", str(success), str(other))
    run("-A", "-a", str(archive), "-s", str(success), str(make_work(staging / "e", "W22084", {})), check_rc=6)
    assert success.read_text().splitlines() == ["W1FPL2251", "W1NLM4700"]


# --- audit ----------------------------------------------------------------------------------------------------
@pytest.fixture
def audit_tool(fakebin: Path, tmp_path: Path) -> Path:
    """A stub audit-tool that records its arguments; it fails when its path argument holds a FAIL file."""
    record = tmp_path / "audit-calls.txt"
    stub = fakebin / "audit-tool"
    stub.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {record}\n'
                    'for last; do :; done\n[[ -e $last/FAIL ]] && exit 1\nexit 0\n')
    stub.chmod(0o755)
    return record


def test_audit_runs_before_and_after_with_their_options(run, staging: Path, archive: Path, audit_tool: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run("-a", str(archive), str(work), env={"LOCAL_AUDIT_OPTIONS": "-c local  -t 2", "REPO_AUDIT_OPTIONS": "-r repo"})
    assert audit_tool.read_text().splitlines() == [
        f"-c local -t 2 {work}", f"-r repo {archive / 'Archive2/51/W1FPL2251'}"]


def test_audit_only_when_no_archive_and_no_web(run, staging: Path, archive: Path, audit_tool: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    run(str(work), env={"LOCAL_AUDIT_OPTIONS": "-q"})
    assert audit_tool.read_text().splitlines() == [f"-q {work}"]
    assert list(archive.iterdir()) == []


def test_failed_audit_stops_before_the_archive(run, staging: Path, archive: Path, audit_tool: Path) -> None:
    work = make_work(staging, "W1FPL2251", {**FIRST, "FAIL": "x"})
    proc = run("-a", str(archive), str(work), check_rc=4)
    assert "ERROR: W1FPL2251: audit-pre: audit-tool failed" in proc.stderr
    assert not (archive / "Archive2/51/W1FPL2251").exists()


def test_missing_audit_tool_is_reported_and_sync_continues(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    out = run("-a", str(archive), str(work)).stdout
    assert "audit-tool is not installed: pre-sync audit skipped" in out
    assert tree(archive / "Archive2/51/W1FPL2251") == FIRST


def test_missing_audit_tool_fails_when_audit_is_required(run, staging: Path, archive: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    proc = run("-a", str(archive), str(work), env={"AUDIT_REQUIRED": "1"}, check_rc=4)
    assert "W1FPL2251: audit-pre: audit-tool is not installed and AUDIT_REQUIRED=1" in proc.stderr
    assert not (archive / "Archive2/51/W1FPL2251").exists()


# --- web ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def web_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=WEB_BUCKET)
    yield env
    for item in s3.list_objects_v2(Bucket=WEB_BUCKET).get("Contents", []):
        s3.delete_object(Bucket=WEB_BUCKET, Key=item["Key"])


def web_keys() -> dict[str, bytes]:
    s3 = boto3.client("s3")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=WEB_BUCKET).get("Contents", [])]
    return {key: s3.get_object(Bucket=WEB_BUCKET, Key=key)["Body"].read() for key in keys}


def test_web_copy_uploads_the_image_groups(run, staging: Path, web_env: dict[str, str], tmp_path: Path) -> None:
    work = make_work(staging, "W1FPL2251", {**FIRST, "images/loose.txt": "not in a group"})
    success = tmp_path / "ok.txt"
    out = run("-w", f"s3://{WEB_BUCKET}/works", "-s", str(success), str(work), env=web_env).stdout
    assert web_keys() == {"works/W1FPL2251/images/W1FPL2251-I1KG1/0001.tif": b"one",
                          "works/W1FPL2251/images/W1FPL2251-I1KG1/0002.tif": b"two"}
    assert "uploaded=2 unchanged=0 deleted=0" in out
    assert success.read_text() == "W1FPL2251\n"


def test_web_copy_without_replace_keeps_objects_and_skips_unchanged(
    run, staging: Path, web_env: dict[str, str], tmp_path: Path,
) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    args = ("-w", f"s3://{WEB_BUCKET}/works", "-s", str(tmp_path / "ok.txt"), str(work))
    run(*args, env=web_env)
    (work / "images/W1FPL2251-I1KG1/0002.tif").unlink()
    out = run(*args, env=web_env).stdout
    assert "uploaded=0 unchanged=1 deleted=0" in out
    assert len(web_keys()) == 2


def test_web_replace_deletes_objects_not_in_the_work(
    run, staging: Path, web_env: dict[str, str], tmp_path: Path,
) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    args = ("-w", f"s3://{WEB_BUCKET}/works", "-s", str(tmp_path / "ok.txt"), str(work))
    run(*args, env=web_env)
    (work / "images/W1FPL2251-I1KG1/0002.tif").unlink()
    run("-W", *args, env=web_env)
    assert web_keys() == {"works/W1FPL2251/images/W1FPL2251-I1KG1/0001.tif": b"one"}


def test_web_replace_refuses_a_work_without_images(run, staging: Path, web_env: dict[str, str], tmp_path: Path) -> None:
    success = tmp_path / "ok.txt"
    run("-w", f"s3://{WEB_BUCKET}/works", "-s", str(success), str(make_work(staging, "W1FPL2251", FIRST)), env=web_env)
    bare = make_work(staging / "bare", "W1FPL2251", {"sources/notes.txt": "notes"})
    proc = run("-W", "-w", f"s3://{WEB_BUCKET}/works", "-s", str(success), str(bare), env=web_env, check_rc=8)
    assert "W1FPL2251: web: web copy" in proc.stderr and "refused" in proc.stderr
    assert len(web_keys()) == 2
    assert success.read_text() == "W1FPL2251\n"


def test_no_refresh_web_skips_the_web_copy(run, staging: Path, web_env: dict[str, str], tmp_path: Path) -> None:
    work = make_work(staging, "W1FPL2251", FIRST)
    out = run("-w", f"s3://{WEB_BUCKET}/works", "-s", str(tmp_path / "ok.txt"), str(work),
              env={**web_env, "NO_REFRESH_WEB": "Yes"}).stdout
    assert "web copy skipped" in out
    assert web_keys() == {}


def test_archive_and_web_together(run, staging: Path, archive: Path, web_env: dict[str, str], tmp_path: Path) -> None:
    work = make_work(staging, "W1NLM4700", {"images/W1NLM4700-I1/1.jpg": "img"})
    run("-a", str(archive), "-w", f"s3://{WEB_BUCKET}", "-s", str(tmp_path / "ok.txt"), str(work), env=web_env)
    assert tree(archive / "Archive0/00/W1NLM4700") == {"images/W1NLM4700-I1/1.jpg": "img"}
    assert web_keys() == {"W1NLM4700/images/W1NLM4700-I1/1.jpg": b"img"}
    assert os.path.exists(tmp_path / "ok.txt")
