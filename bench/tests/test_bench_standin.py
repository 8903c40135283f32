"""The bench's stand-ins: the range-fair S3 server (a ranged GET reads and sends only its range, in time that grows
with it) and the bdrc bag profile (a real work's shape, sizes fixed by the seed)."""

from __future__ import annotations

import os
import statistics
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import bagit
import boto3
import pytest

from harness.bags import bdrc_profile_files, make_bdrc_profile_zip
from harness.moto_server import MotoServer, standin_stats

MIB = 2**20
BUCKET, KEY = "bench-standin", "Archive0/00/W1STANDIN/W1STANDIN.bag.zip"


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[object, str, bytes]]:
    saved = dict(os.environ)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing")
    server = MotoServer(in_process=False)
    url = server.start()
    try:
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        content = os.urandom(64 * MIB)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=content)
        yield s3, url, content
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def _ranged(s3: object, first: int, last: int) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=KEY, Range=f"bytes={first}-{last}")["Body"].read()  # type: ignore[attr-defined]


def test_a_ranged_get_reads_and_sends_only_its_range_with_moto_s_answers(standin: tuple[object, str, bytes]) -> None:
    s3, url, content = standin
    before = standin_stats(url)
    assert _ranged(s3, 1000, 1000 + 4095) == content[1000:5096]
    after = standin_stats(url)
    # stock moto reads all 64 MiB for this 4 KiB
    assert after["store_bytes_read"] - before["store_bytes_read"] == 4096
    assert (after["bytes_served"] - before["bytes_served"], after["object_gets"] - before["object_gets"]) == (4096, 1)
    # suffix ranges, open ranges, several ranges (the whole object, as S3) and a range past the end: moto's answers
    assert s3.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=-10")["Body"].read() == content[-10:]  # type: ignore[attr-defined]
    assert s3.get_object(Bucket=BUCKET, Key=KEY, Range=f"bytes={len(content) - 5}-")["Body"].read() == content[-5:]  # type: ignore[attr-defined]
    assert s3.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=0-1,5-6")["ContentLength"] == len(content)  # type: ignore[attr-defined]
    with pytest.raises(s3.exceptions.ClientError, match="InvalidRange"):  # type: ignore[attr-defined]
        _ranged(s3, len(content) + 1, len(content) + 9)


def test_a_ranged_get_s_time_grows_with_its_range(standin: tuple[object, str, bytes]) -> None:
    s3, _, _ = standin

    def seconds(length: int) -> float:
        samples = []
        for _ in range(3):
            began = time.perf_counter()
            _ranged(s3, 8 * MIB, 8 * MIB + length - 1)
            samples.append(time.perf_counter() - began)
        return statistics.median(samples)

    small, large = seconds(256 * 1024), seconds(32 * MIB)
    # stock moto: both cost a read of the 64 MiB object, so nearly the same time; here 128x the bytes, >= 4x the time
    assert large > 4 * small, (small, large)


def test_the_bdrc_profile_is_a_valid_bag_shaped_like_a_real_work(tmp_path: Path) -> None:
    bag = make_bdrc_profile_zip(tmp_path, "W1BENCH05", total_bytes=40 * MIB)
    members = bdrc_profile_files("W1BENCH05", 40 * MIB)
    assert members == bdrc_profile_files("W1BENCH05", 40 * MIB)  # the sizes are the seed's
    images = [size for rel, size in members if rel.startswith("images/")]
    masters = [size for rel, size in members if rel.startswith("archive/")]
    assert len(images) == len(masters) >= 4
    assert all(50 << 10 <= s < 400 << 10 for s in images) and all(MIB <= s < 8 * MIB for s in masters)
    assert len({rel.split("/")[1] for rel, _ in members if rel.startswith("images/")}) >= 2  # image groups
    assert len([rel for rel, _ in members if rel.startswith("sources/")]) == 3
    assert (bag.files, bag.payload_bytes) == (len(members), sum(size for _, size in members))
    assert abs(bag.payload_bytes - 40 * MIB) < 9 * MIB
    with zipfile.ZipFile(bag.path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        zf.extractall(tmp_path / "out")
    bagit.Bag(str(tmp_path / "out" / "W1BENCH05.bag")).validate()
