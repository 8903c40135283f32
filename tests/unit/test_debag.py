"""De-bag behaviour: fixity failures name the work and file, nothing half-done reaches the staging layout."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest

from harness.bags import make_bdrc_bag_zip, make_plain_work_zip
from harness.zip_edits import add_member, drop_member, read_members, rewrite_zip, tamper_member
from onprem.finisher.debag import ranged as debag_module
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.byte_source import FileSource
from onprem.finisher.debag.member_stream import MemberWriter
from onprem.finisher.debag.model import DebagResult, DebagSettings
from onprem.finisher.debag.ranged import RangeReading, debag_source
from onprem.finisher.debag.staging import DebagJob, temp_dir_for
from onprem.finisher.errors import (
    BagIncomplete,
    BagInvalid,
    ChecksumMismatch,
    FetchFileRejected,
    MissingTagManifest,
    OxumMismatch,
    UnsafeManifestPath,
    WeakChecksums,
)
from onprem.finisher.progress import CountingProgress

RID = "W1NLM4700"
SETTINGS = DebagSettings(workers=2, fsync=False)
TIF2 = f"data/{RID}-I1KG1/images/{RID}-I1KG1_0002.tif"


def _written(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the members written from here on (each written once per read of its segment)."""
    written: list[str] = []
    real_write = MemberWriter._write
    monkeypatch.setattr(MemberWriter, "_write", lambda self, reader, span, *a: written.append(
        span.target.member.name) or real_write(self, reader, span, *a))
    return written


def _debag_by_member(zip_path: Path, staging: Path) -> DebagResult:
    """A de-bag whose every member is a segment of its own (the unit of resume)."""
    return debag_source(FileSource(zip_path), DebagJob(RID, staging, SETTINGS, "etag1"),
                        RangeReading(part_size=1, concurrency=2))


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


def _edit_member(zip_path: Path, name: str, edit) -> None:  # type: ignore[no-untyped-def]
    rewrite_zip(zip_path, [(i, edit(c) if i.filename == name else c) for i, c in read_members(zip_path)])


def test_tampered_payload_is_a_checksum_mismatch_naming_work_file_and_digests(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    tamper_member(zip_path, f"{RID}.bag/{TIF2}", offset=7)
    with pytest.raises(ChecksumMismatch) as caught:
        debag_archive(zip_path, RID, staging, SETTINGS)
    message = str(caught.value)
    assert message.startswith(f"{RID}: checksum mismatch for {TIF2} (sha256 expected ")
    assert ", got " in message and caught.value.details == [message.removeprefix(f"{RID}: ")]
    assert not (staging / RID).exists()
    assert zip_path.exists()


def test_failed_debag_keeps_the_temp_dir_as_evidence(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    tamper_member(zip_path, f"{RID}.bag/{TIF2}")
    with pytest.raises(ChecksumMismatch):
        debag_archive(zip_path, RID, staging, SETTINGS, version_tag="v1")
    evidence = [p for p in staging.iterdir() if p.name.startswith(".debag-failed-")]
    assert len(evidence) == 1 and (evidence[0] / RID / TIF2.removeprefix("data/")).is_file()
    assert not temp_dir_for(staging, RID, "v1").exists()


def test_failed_debag_without_keep_evidence_leaves_nothing(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    tamper_member(zip_path, f"{RID}.bag/{TIF2}")
    with pytest.raises(ChecksumMismatch):
        debag_archive(zip_path, RID, staging, DebagSettings(keep_evidence=False, fsync=False))
    assert list(staging.iterdir()) == []


def test_missing_payload_file_is_reported(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    drop_member(zip_path, f"{RID}.bag/{TIF2}")
    with pytest.raises(BagIncomplete, match=f"missing {TIF2}"):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_unexpected_payload_file_is_reported(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    add_member(zip_path, f"{RID}.bag/data/extra.txt", b"not in any manifest")
    with pytest.raises(BagIncomplete, match=r"unexpected data/extra\.txt"):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_file_outside_any_bag_is_reported(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    add_member(zip_path, "README.txt", b"stray")
    with pytest.raises(BagIncomplete, match="outside any work"):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_payload_oxum_mismatch_is_reported(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    _edit_member(zip_path, f"{RID}.bag/bag-info.txt",
                 lambda c: b"\n".join(b"Payload-Oxum: 1.1" if line.startswith(b"Payload-Oxum") else line
                                      for line in c.split(b"\n")))
    with pytest.raises(OxumMismatch, match=r"Payload-Oxum 1\.1 declared, payload is 12288\.3"):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_tag_file_changed_after_bagging_is_a_checksum_mismatch(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    _edit_member(zip_path, f"{RID}.bag/bag-info.txt", lambda c: c + b"Contact-Name: someone\n")
    with pytest.raises(ChecksumMismatch, match=f"{RID}: checksum mismatch for bag-info.txt"):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_fetch_txt_is_rejected(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    add_member(zip_path, f"{RID}.bag/fetch.txt", b"https://example.org/x 10 data/x\n")
    with pytest.raises(FetchFileRejected, match=r"fetch\.txt"):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_manifest_path_escaping_the_bag_is_rejected(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    _edit_member(zip_path, f"{RID}.bag/manifest-sha256.txt", lambda c: c + b"0" * 64 + b"  data/../../../etc/passwd\n")
    with pytest.raises(UnsafeManifestPath, match="escapes the bag"):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_missing_tag_manifest_is_rejected(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    drop_member(zip_path, f"{RID}.bag/tagmanifest-sha256.txt")
    with pytest.raises(MissingTagManifest):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_md5_only_bag_is_accepted_with_a_warning_by_default(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, algorithms=("md5",))
    work = debag_archive(zip_path, RID, staging, SETTINGS).works[0]
    assert work.fixity_checked and work.algorithms == ("md5",)
    assert any("only md5" in warning for warning in work.warnings)


def test_md5_only_bag_is_rejected_when_strong_checksums_are_required(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, algorithms=("md5",))
    with pytest.raises(WeakChecksums, match="only md5"):
        debag_archive(zip_path, RID, staging, DebagSettings(require_strong_checksums=True, fsync=False))


def test_plain_zip_is_rejected_when_not_allowed(tmp_path: Path, staging: Path) -> None:
    zip_path = make_plain_work_zip(tmp_path)
    with pytest.raises(BagInvalid, match="no bag"):
        debag_archive(zip_path, RID, staging, DebagSettings(allow_plain_zip=False, fsync=False))


def test_zip_with_neither_bag_nor_work_folder_is_rejected(tmp_path: Path, staging: Path) -> None:
    zip_path = tmp_path / "odd.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("notes/readme.txt", "hello")
    with pytest.raises(BagInvalid, match="neither a bag nor a work folder"):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_progress_reports_every_payload_byte_and_file(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, files_per_work=4, file_size=3000)
    progress = CountingProgress()
    debag_archive(zip_path, RID, staging, SETTINGS, progress=progress)
    assert (progress.bytes_done, progress.files_done) == (12000, 4) == (progress.total_bytes, progress.total_files)
    assert progress.finished


def test_file_modification_times_come_from_the_zip(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(f"{RID}.bag/{TIF2}")
    debag_archive(zip_path, RID, staging, SETTINGS)
    mtime = (staging / RID / TIF2.removeprefix("data/")).stat().st_mtime
    assert time.localtime(mtime)[:6] == info.date_time


def test_members_verified_before_a_crash_are_not_redone(tmp_path: Path, staging: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, files_per_work=5)

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt  # what a kill between verification and the final move looks like

    with monkeypatch.context() as patch:
        patch.setattr(debag_module, "place_works", crash)
        with pytest.raises(KeyboardInterrupt):
            debag_archive(zip_path, RID, staging, SETTINGS, version_tag="etag1")
    assert temp_dir_for(staging, RID, "etag1").is_dir()
    extracted = _written(monkeypatch)
    result = debag_archive(zip_path, RID, staging, SETTINGS, version_tag="etag1")
    assert result.members_resumed == 5
    assert all("/data/" not in name for name in extracted)  # only the small tag files again
    assert (staging / RID / f"{RID}-I1KG1" / "images" / f"{RID}-I1KG1_0005.tif").is_file()
    assert not temp_dir_for(staging, RID, "etag1").exists()


def test_a_changed_member_is_not_taken_from_the_journal(tmp_path: Path, staging: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(debag_module, "place_works", lambda *_a: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            debag_archive(zip_path, RID, staging, SETTINGS)
    tamper_member(zip_path, f"{RID}.bag/{TIF2}")
    with pytest.raises(ChecksumMismatch, match=TIF2):
        debag_archive(zip_path, RID, staging, SETTINGS)


def test_existing_staging_copy_is_replaced_only_after_verification(tmp_path: Path, staging: Path) -> None:
    old = staging / RID / "old.txt"
    old.parent.mkdir()
    old.write_text("previous")
    zip_path = make_bdrc_bag_zip(tmp_path)
    tamper_member(zip_path, f"{RID}.bag/{TIF2}")
    with pytest.raises(ChecksumMismatch):
        debag_archive(zip_path, RID, staging, SETTINGS)
    assert old.read_text() == "previous"
    debag_archive(make_bdrc_bag_zip(tmp_path / "good"), RID, staging, SETTINGS)
    assert not old.exists() and (staging / RID / f"{RID}.bag" / "bagit.txt").is_file()


def test_fsync_setting_still_produces_the_same_result(tmp_path: Path, staging: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path)
    work = debag_archive(zip_path, RID, staging, DebagSettings(workers=1, fsync=True)).works[0]
    assert work.files == 3 and os.path.isdir(work.path)


def test_a_journaled_member_corrupted_on_disk_after_a_crash_is_redone(tmp_path: Path, staging: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path, files_per_work=5)
    with monkeypatch.context() as patch:
        patch.setattr(debag_module, "place_works", lambda *_a: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            _debag_by_member(zip_path, staging)
    # a power loss after the journal line reached the disk but before the file's bytes did: same size, wrong bytes
    image = f"{RID}-I1KG1/images/{RID}-I1KG1_0002.tif"
    on_disk = temp_dir_for(staging, RID, "etag1") / RID / image
    on_disk.write_bytes(bytes(on_disk.stat().st_size))
    extracted = _written(monkeypatch)
    result = _debag_by_member(zip_path, staging)
    assert result.members_resumed == 4
    assert [name for name in extracted if "/data/" in name] == [f"{RID}.bag/data/{image}"]
    with zipfile.ZipFile(zip_path) as zf:
        assert (staging / RID / image).read_bytes() == zf.read(f"{RID}.bag/data/{image}")


def test_a_plain_zip_s_journaled_member_corrupted_on_disk_after_a_crash_is_redone(
        tmp_path: Path, staging: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip without a bag has no manifest digests: its journaled members are held to their CRC-32 on disk. Before,
    nothing was re-read for them, and a member a power loss had zeroed was placed as verified."""
    zip_path = make_plain_work_zip(tmp_path, files_per_work=5)
    job = DebagJob(RID, staging, SETTINGS, "etag1")
    with monkeypatch.context() as patch:
        patch.setattr(debag_module, "place_works", lambda *_a: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            debag_source(FileSource(zip_path), job, RangeReading(part_size=1, concurrency=2))
    image = f"{RID}-I1KG1/images/{RID}-I1KG1_0002.tif"
    on_disk = temp_dir_for(staging, RID, "etag1") / RID / image
    on_disk.write_bytes(bytes(on_disk.stat().st_size))
    extracted = _written(monkeypatch)
    result = debag_source(FileSource(zip_path), job, RangeReading(part_size=1, concurrency=2))
    assert result.members_resumed == 4
    assert extracted == [f"{RID}/{image}"]
    with zipfile.ZipFile(zip_path) as zf:
        assert (staging / RID / image).read_bytes() == zf.read(f"{RID}/{image}")


def test_fsync_setting_flushes_once_before_placing_not_per_member(tmp_path: Path, staging: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[bool] = []
    fsyncs: list[int] = []
    monkeypatch.setattr(debag_module, "sync_filesystem",
                        lambda folder: flushed.append(not (staging / RID).exists() and folder.is_dir()))
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))
    debag_archive(make_bdrc_bag_zip(tmp_path, files_per_work=5), RID, staging, DebagSettings(workers=2, fsync=True))
    assert flushed == [True] and fsyncs == []
    debag_archive(make_bdrc_bag_zip(tmp_path / "again", files_per_work=5), RID, staging, SETTINGS)
    assert flushed == [True]
