"""The previous pipeline's approach, reproduced with public libraries, as one process that drains a queue.

Per message (the Airflow DAG's four tasks, in order): boto3 ``download_file`` of the zip to disk → ``zipfile``
``extractall`` → ``bagit.Bag.validate`` (bdrc-bag's debag) → the bag's ``data/`` becomes the work folder →
``rsync -a`` into the archive layout ``Archive{n}/{NN}/{RID}`` (syncOneWork.sh's copy) → delete the message.
Three full writes of the bag (download, extract, rsync) and three full reads (extract, validate, rsync).

``--downloader rclone``: the download is ``rclone copyto`` instead (the tool a user would pick; Debian's package),
with ``--multi-thread-streams`` = ``--concurrency``, against the same endpoint through an S3 remote configured by
``RCLONE_CONFIG_BENCH_*`` variables; the other steps are the same.

    python -m bench.baseline --queue-url URL --region R --staging-dir D --archive-root A [--single-stream]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path, PurePosixPath

import bagit
import boto3
from boto3.s3.transfer import TransferConfig

from contract.keys import archive_relpath_for_rid, work_rid_from_key

logger = logging.getLogger(__name__)

#: prefix of the line giving each work's step times (read back by bench.e2e)
STAGES_PREFIX = "baseline-stages "


def transfer_config(single_stream: bool, part_bytes: int, concurrency: int) -> TransferConfig:
    """``single_stream``: one GET for the whole object (the threshold is above any object); else ranged parts."""
    if single_stream:
        return TransferConfig(multipart_threshold=2**62, max_concurrency=1, use_threads=False)
    return TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes, max_concurrency=concurrency)


def rclone_environ(endpoint_url: str) -> dict[str, str]:
    """The environment of ``rclone``: an S3 remote ``bench:`` on ``endpoint_url`` with the process's credentials.

    The AWS variables themselves are left out: rclone's AWS SDK refuses an ``AWS_CA_BUNDLE`` with its transport,
    and the loopback endpoint is plain HTTP."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**environ, "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint_url,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", ""),
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            "RCLONE_CONFIG_BENCH_SESSION_TOKEN": os.environ.get("AWS_SESSION_TOKEN", ""),
            "RCLONE_CONFIG_BENCH_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true", "RCLONE_CONFIG": os.devnull}


def rclone_download(bucket: str, key: str, zip_path: Path, streams: int) -> None:
    """``rclone copyto bench:bucket/key zip_path --multi-thread-streams N`` (rclone's other defaults)."""
    subprocess.run(["rclone", "copyto", f"bench:{bucket}/{key}", str(zip_path), "--multi-thread-streams",
                    str(streams)], check=True, env=rclone_environ(os.environ["AWS_ENDPOINT_URL"]))


def restore_one(s3: object, body: dict[str, object], staging_dir: Path, archive_root: Path, config: TransferConfig,
                workers: int, downloader: str = "boto3") -> tuple[Path, dict[str, float], dict[str, float]]:
    """Download, extract, validate and rsync one work; returns its archive folder, each step's seconds and the
    wall-clock time (time.time) each step ended."""
    key = str(body["key"])
    rid = work_rid_from_key(key)
    seconds: dict[str, float] = {}
    ends: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step], clock, ends[step] = now - clock, now, time.time()

    download_dir = staging_dir / "bag-download"
    download_dir.mkdir(parents=True, exist_ok=True)
    zip_path = download_dir / PurePosixPath(key).name
    if downloader == "rclone":
        rclone_download(str(body["bucket"]), key, zip_path, config.max_concurrency)
    else:
        s3.download_file(str(body["bucket"]), key, str(zip_path), Config=config)  # type: ignore[attr-defined]
    lap("download")
    extract_dir = staging_dir / "debag" / rid
    shutil.rmtree(extract_dir, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(extract_dir)
    lap("extract")
    bag_dir = next(p for p in extract_dir.iterdir() if p.is_dir() and p.name.endswith(".bag"))
    bagit.Bag(str(bag_dir)).validate(processes=workers)
    lap("validate")
    work_dir = staging_dir / "works" / rid
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.rename(bag_dir / "data", work_dir)
    target = archive_root / archive_relpath_for_rid(rid)
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rsync", "-a", f"{work_dir}/", f"{target}/"], check=True)
    lap("rsync")
    shutil.rmtree(work_dir)
    shutil.rmtree(extract_dir)
    zip_path.unlink()
    lap("clean-up")
    return target, seconds, ends


def drain(queue_url: str, region: str, staging_dir: Path, archive_root: Path, config: TransferConfig,
          workers: int, success_list: Path | None = None, wait_s: int = 1,
          stop: threading.Event | None = None, downloader: str = "boto3") -> list[str]:
    """Process messages until a receive comes back empty (or, given ``stop``, until it is set); returns the RIDs
    synced (also appended to ``success_list``, as syncOneWork.sh -s does)."""
    sqs = boto3.client("sqs", region_name=region)
    s3 = boto3.client("s3", region_name=region)
    synced: list[str] = []
    print("baseline: polling", flush=True)
    while not (stop and stop.is_set()):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=wait_s,
                                       VisibilityTimeout=900).get("Messages", [])
        if not messages:
            if stop is None:
                return synced
            continue
        message = messages[0]
        body = json.loads(message["Body"])
        target, seconds, ends = restore_one(s3, body, staging_dir, archive_root, config, workers, downloader)
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        print(STAGES_PREFIX + json.dumps({"work_rid": target.name, "seconds": seconds, "ends": ends}), flush=True)
        synced.append(target.name)
        if success_list is not None:
            with success_list.open("a", encoding="utf-8") as listing:
                listing.write(f"{target.name}\n")
        logger.info("%s: synced to %s", target.name, target, extra={"work_rid": target.name})
    return synced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--staging-dir", type=Path, required=True)
    parser.add_argument("--archive-root", type=Path, required=True)
    parser.add_argument("--serve", action="store_true", help="keep polling until SIGTERM (else: drain, then exit)")
    parser.add_argument("--success-list", type=Path, default=None, help="append each synced RID here")
    parser.add_argument("--single-stream", action="store_true", help="one GET per object (fastest against moto)")
    parser.add_argument("--part-mib", type=int, default=8, help="ranged part size (download_file default: 8)")
    parser.add_argument("--concurrency", type=int, default=10, help="ranged GET threads (default: 10)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="bagit validate processes")
    parser.add_argument("--downloader", choices=("boto3", "rclone"), default="boto3",
                        help="boto3 download_file (default) or rclone copyto with --concurrency streams")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s baseline %(message)s")
    logger.setLevel(logging.INFO)
    config = transfer_config(args.single_stream, args.part_mib * 2**20, args.concurrency)
    stop = threading.Event() if args.serve else None
    if stop is not None:
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    synced = drain(args.queue_url, args.region, args.staging_dir, args.archive_root, config, args.workers,
                   args.success_list, stop=stop, downloader=args.downloader)
    print(json.dumps({"synced": synced}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
