"""Copy a work's web images (the image-group folders under ``images/``) to ``s3://bucket/prefix/{RID}/images/…``.

Run by ``bin/syncOneWork.sh -w`` as ``python -m onprem.finisher.sync.webcopy``. Files already in the prefix with the
same size and MD5 ETag are not uploaded again; nothing is deleted unless ``--replace`` is given, then objects
under ``prefix/{RID}/`` that are not in the work's image groups are deleted (refused when the work has none).
Honours ``AWS_ENDPOINT_URL`` and the usual AWS credential variables.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

EXIT_FAILED = 1
EXIT_REFUSED = 3
_DELETE_BATCH = 1000


@dataclass(frozen=True)
class WebCopyReport:
    uploaded: int
    unchanged: int
    deleted: int


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``; raises ValueError for anything else."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


def web_image_files(work_path: Path) -> dict[str, Path]:
    """The files of each image-group folder of ``work_path/images``, keyed by their path under the work."""
    images = work_path / "images"
    if not images.is_dir():
        return {}
    files: dict[str, Path] = {}
    for group in sorted(p for p in images.iterdir() if p.is_dir() and not p.is_symlink()):
        for path in sorted(group.rglob("*")):
            if path.is_file() and not path.is_symlink():
                files[path.relative_to(work_path).as_posix()] = path
    return files


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _existing(s3, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = (item["Size"], item["ETag"].strip('"'))
    return found


def copy_web_images(work_path: Path, work_rid: str, web_parent: str, *, replace: bool, s3=None) -> WebCopyReport:
    """Upload the image groups of ``work_path`` under ``web_parent/{work_rid}/``; see the module docstring."""
    bucket, prefix = split_s3_url(web_parent)
    work_prefix = f"{prefix}/{work_rid}/" if prefix else f"{work_rid}/"
    files = web_image_files(work_path)
    if replace and not files:
        raise ValueError(f"--replace refused: {work_path} has no image-group files, s3://{bucket}/{work_prefix} kept")
    s3 = s3 or boto3.client("s3")
    existing = _existing(s3, bucket, work_prefix)
    uploaded = unchanged = 0
    for relpath, path in files.items():
        key = work_prefix + relpath
        size, etag = existing.get(key, (-1, ""))
        if size == path.stat().st_size and etag == _md5(path):
            unchanged += 1
            continue
        s3.upload_file(str(path), bucket, key)
        uploaded += 1
    stale = sorted(set(existing) - {work_prefix + relpath for relpath in files}) if replace else []
    for start in range(0, len(stale), _DELETE_BATCH):
        batch = [{"Key": key} for key in stale[start:start + _DELETE_BATCH]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    return WebCopyReport(uploaded=uploaded, unchanged=unchanged, deleted=len(stale))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webcopy", description=__doc__.splitlines()[0])
    parser.add_argument("--work-rid", required=True)
    parser.add_argument("--replace", action="store_true", help="delete objects not in the work's image groups")
    parser.add_argument("work_path", type=Path)
    parser.add_argument("web_parent", help="s3://bucket/prefix")
    args = parser.parse_args(argv)
    try:
        report = copy_web_images(args.work_path, args.work_rid, args.web_parent, replace=args.replace)
    except ValueError as err:
        print(f"webcopy: ERROR: {args.work_rid}: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except (BotoCoreError, ClientError, OSError) as err:
        print(f"webcopy: ERROR: {args.work_rid}: {args.web_parent}: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"webcopy: {args.work_rid}: web: uploaded={report.uploaded} unchanged={report.unchanged} "
          f"deleted={report.deleted} to {args.web_parent.rstrip('/')}/{args.work_rid}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
