"""The works' staging folder hidden under the archive root: with the archive on a filesystem of its own (a tmpfs
mounted for the test) and the staging area elsewhere, the fetched and de-bagged work is hard-linked into
``Archive{n}/{NN}/{RID}`` (the de-bag's own inodes, no copy), and nothing that syncs the archive (the script's
``-A``, the web copy, the archive check, the success list) sees or touches the hidden folder."""

from __future__ import annotations

import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from contract.keys import archive_relpath_for_rid
from harness.bags import make_bagit_bag, zip_tree
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.staging import STAGING_FOLDER, open_works_dir
from onprem.finisher.errors import ArchiveUnavailable
from onprem.finisher.fetch.request import FetchRequest, FetchSettings
from onprem.finisher.fetch_debag.segmented import FetchDebagJob, fetch_and_debag
from onprem.finisher.sync.stage import sync_work
from onprem.finisher.work.settings import Settings, load_settings
from onprem.finisher.work.stages import staging_slot

RID = "W1NLM4700"
KEY = f"Archive0/00/{RID}/{RID}.bag.zip"
WEB_BUCKET = "web-images"
ARCHIVE_FS_BYTES = 64 * 2**20


@pytest.fixture
def archive_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own (another filesystem than ``tmp_path``'s) as the archive root, always unmounted."""
    root = tmp_path / "archive"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={ARCHIVE_FS_BYTES}", "tmpfs", str(root)], check=True,
                   capture_output=True)
    try:
        assert os.stat(root).st_dev != os.stat(tmp_path).st_dev, "the archive must be another filesystem"
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _settings(tmp_path: Path, archive_root: Path, **overrides: object) -> Settings:
    return load_settings(env_name="dev", archive_root=archive_root, staging_dir=tmp_path / "staging",
                         state_dir=tmp_path / "state", **overrides)


def _bag_zip(tmp_path: Path) -> Path:
    """A bag whose web images are ``images/<group>/…`` (what the web copy uploads), beside an ``archive/`` master."""
    work = tmp_path / "build" / RID
    for rel in (f"images/{RID}-I1KG1/0001.jpg", f"images/{RID}-I1KG1/0002.jpg", f"archive/{RID}-I1KG1/0001.tif"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(os.urandom(20_000))
    make_bagit_bag(work)
    return zip_tree(tmp_path / f"{RID}.bag.zip", [(f"{RID}.bag", work)], compression=zipfile.ZIP_STORED)


def _inodes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_ino for p in root.rglob("*") if p.is_file()}


def test_a_work_staged_on_the_archives_filesystem_is_linked_into_place_and_its_folder_stays_hidden(
        s3, bucket: str, endpoint: str, archive_fs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zip_path = _bag_zip(tmp_path)
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=zip_path.read_bytes())
    request = FetchRequest(RID, bucket, KEY, zip_path.stat().st_size, put["ETag"], put.get("VersionId"))
    s3.create_bucket(Bucket=WEB_BUCKET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # the script's web copy is a process of its own
    settings = _settings(tmp_path, archive_fs)
    settings.ensure_dirs()
    assert settings.works_dir == archive_fs / STAGING_FOLDER / "works"
    # another work's de-bag in progress in the hidden folder: the sync of this one must leave it alone
    other = settings.works_dir / ("0" * 16) / ".debag-W9OTHER-x" / "W9OTHER" / "images" / "0001.tif"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"half a work")
    other_inode = other.stat().st_ino

    slot = settings.works_dir / staging_slot(f"{bucket}/{KEY}")
    fetched = fetch_and_debag(s3, FetchDebagJob(request, slot, FetchSettings(min_free_bytes=0),
                                                DebagSettings(workers=2, fsync=False)))
    [staged] = fetched.debag.works
    debagged = _inodes(staged.path)
    sync = settings.sync.model_copy(update={"web_parent": f"s3://{WEB_BUCKET}/works"})
    result = sync_work(staged.path, RID, sync)

    archive_path = archive_fs / archive_relpath_for_rid(RID)
    assert result.copy_mode == "link" and result.rehashed_files == 0
    assert _inodes(archive_path) == debagged  # the bytes the de-bag wrote, placed: never a second write
    assert sorted(p.name for p in archive_fs.iterdir()) == [".bdrc-staging", ".sync-locks", "Archive0"]
    assert [p for p in settings.works_dir.rglob("*") if p.is_file()] == [other]  # this work's staged copy gone
    assert other.read_bytes() == b"half a work" and other.stat().st_ino == other_inode
    assert (settings.sync.log_dir / "synced-works.txt").read_text() == f"{RID}\n"
    web_keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
                .list_objects_v2(Bucket=WEB_BUCKET).get("Contents", [])]
    assert web_keys == [f"works/{RID}/images/{RID}-I1KG1/0001.jpg", f"works/{RID}/images/{RID}-I1KG1/0002.jpg"]
    assert not any(STAGING_FOLDER in key or "W9OTHER" in key for key in web_keys)


def test_a_staging_folder_set_on_another_filesystem_makes_the_sync_copy(archive_fs: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path, archive_fs, archive_staging_dir=tmp_path / "staging")
    assert settings.works_dir == tmp_path / "staging" / "works"  # the old layout, by setting
    work = open_works_dir(settings.works_dir, settings.archive_root, RID) / "0123456789abcdef" / RID
    (work / "images" / f"{RID}-I1KG1").mkdir(parents=True)
    (work / "images" / f"{RID}-I1KG1" / "0001.tif").write_bytes(b"image")
    staged = _inodes(work)
    result = sync_work(work, RID, settings.sync)
    assert result.copy_mode == "copy"
    archived = _inodes(archive_fs / archive_relpath_for_rid(RID))
    assert archived.keys() == staged.keys() and set(archived.values()).isdisjoint(staged.values())


def test_a_missing_archive_root_is_never_created_for_the_staging_folder(tmp_path: Path) -> None:
    settings = _settings(tmp_path, tmp_path / "mnt" / "archive")
    settings.ensure_dirs()  # the finisher starts: its own folders, not the one under the archive
    with pytest.raises(ArchiveUnavailable, match="does not exist"):
        open_works_dir(settings.works_dir, settings.archive_root, RID)
    assert not (tmp_path / "mnt").exists() and settings.staging_dir.is_dir() and settings.state_dir.is_dir()
