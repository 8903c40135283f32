"""The benchmark harness runs end to end on tiny bags: generated bag → moto → baseline and our finisher → report.

No timing is asserted: only that every run synced its work, deleted its message, and was measured.
"""

from __future__ import annotations

import json
import sys
import time
import zipfile
from pathlib import Path

import bagit

from bench.debag_bench import build_bag
from bench.e2e import RunPaths, Transfer
from bench.measure import MeasuredProcess
from bench.ours import OursPipeline
from bench.run import main as bench_main
from bench.timeline import TimelineSampler
from harness.bags import make_streamed_bag_zip


def test_generated_bag_is_a_valid_bagit_bag_of_the_requested_size(tmp_path: Path) -> None:
    bag = make_streamed_bag_zip(tmp_path, "W1BENCH01", total_bytes=3 * 2**20 + 7, file_bytes=2**20)
    assert (bag.files, bag.payload_bytes) == (4, 3 * 2**20 + 7)
    with zipfile.ZipFile(bag.path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        zf.extractall(tmp_path / "out")
    bagit.Bag(str(tmp_path / "out" / "W1BENCH01.bag")).validate()


def test_debag_bench_bag_is_a_valid_bagit_bag_of_whole_files(tmp_path: Path) -> None:
    work = build_bag(tmp_path, size_mib=3, file_mib=1, algorithms=["sha512", "md5"])
    payload = sorted(p for p in (work / "data").rglob("*") if p.is_file())
    assert [p.stat().st_size for p in payload] == [2**20] * 3
    assert {p.name for p in work.glob("manifest-*.txt")} == {"manifest-sha512.txt", "manifest-md5.txt"}
    bagit.Bag(str(work)).validate()


def test_measured_process_reports_the_bytes_its_tree_wrote(tmp_path: Path) -> None:
    target = tmp_path / "written"
    script = f"import os; f = open({str(target)!r}, 'wb'); f.write(os.urandom(3 << 20)); f.close()"
    # the child writes; its parent (the measuring wrapper) accounts for it after reaping it
    measured = MeasuredProcess([sys.executable, "-c", script]).wait(timeout_s=60)
    assert measured.returncode == 0
    assert measured.io.wchar >= 3 << 20
    assert measured.max_process_rss_bytes > 0


def test_harness_runs_every_pipeline_the_resume_row_and_the_goals_on_a_tiny_bdrc_bag(tmp_path: Path) -> None:
    results = tmp_path / "results"
    exit_code = bench_main(["--tiny", "--sections", "raw,e2e,resume", "--e2e-bags", "bdrc", "--scratch",
                            str(tmp_path), "--results-dir", str(results), "--markdown", str(tmp_path / "table.md")])
    document = json.loads((results / "latest.json").read_text())
    e2e = next(s for s in document["sections"] if s["title"].startswith("End to end"))
    raw = document["raw"]
    # a failed run's output tail is on stderr ("!! <pipeline> on <bag> failed"), shown with the failure
    assert exit_code == 0, (e2e["rows"], raw.get("resume"))
    pipelines = {(row[0].split()[0], row[1]): row for row in e2e["rows"]}
    assert set(pipelines) == {("bdrc", "baseline"), ("bdrc", "rclone"), ("bdrc", "ours")}
    assert all(row[e2e["columns"].index("ok")] == "1/1" for row in e2e["rows"]), e2e["rows"]
    bdrc = raw["e2e_bdrc"]
    assert bdrc["baseline_written_per_byte"] > 0 and bdrc["ours_max_rss"] > 0 and bdrc["speedup_vs_rclone"] > 0
    # the baselines hold the zip and its extraction at once; the sampler saw it
    assert bdrc["baseline_staging_peak_per_byte"] >= 1.9, bdrc
    # the archive on a loop-mounted ext4, staging on the scratch disk: ours still writes each byte once, linked
    archive_fs = raw["e2e_bdrc_archive_fs"]
    assert archive_fs["measured"] and archive_fs["write_bytes_counted_per_byte"] > 0.9, archive_fs
    assert archive_fs["ours_written_per_byte"] < 1.5 < archive_fs["baseline_written_per_byte"], archive_fs
    # every section ran on a fresh journaled ext4 (--scratch-fs fresh, the default), the create cost of both kept
    bench_fs = raw["scratch_fs"]
    assert bench_fs["made"] and bench_fs["direct_io"] and bench_fs["create_us"] > 0 < bench_fs["scratch_create_us"]
    assert document["machine"]["scratch_fs"].startswith("fresh journaled ext4"), document["machine"]
    assert raw["resume"]["all_ok"] and raw["resume"]["fetched_per_zip_byte"] >= 1, raw["resume"]
    assert raw["slowest_raw"]["bytes_per_s"] > 0
    assert raw["standin_ranges"]["seconds_by_range_bytes"]
    # ours on the production defaults: recorded, and the baselines get as many connections
    assert raw["baseline_transfer"]["concurrency"] == raw["ours_settings"]["fetch"]["max_concurrency"]
    goals = {g["name"].split(" (")[0]: g for g in document["goals"]}
    assert goals["bdrc profile vs the rclone pipeline, same connections"]["met"] is not None
    assert goals["resume after a kill at 50 %: bytes fetched / zip size"]["met"] is not None
    assert (results / "bench-bdrc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert document["machine"]["cpus"] >= 1
    assert "| bag | pipeline |" in (tmp_path / "table.md").read_text()


def test_ours_runs_on_the_production_defaults(tmp_path: Path) -> None:
    """No fetch, de-bag or sync setting is set for ours, whatever transfer the baselines use."""

    class Aws:
        env_file = tmp_path / "env.yaml"

        def subprocess_env(self, **extra: str) -> dict[str, str]:
            return extra

    env = OursPipeline().command(Aws(), RunPaths(tmp_path), Transfer(single_stream=True), "http://127.0.0.1:1",
                                 serve=True)[1]
    assert [name for name in env if name.startswith(("FINISHER_FETCH", "FINISHER_DEBAG", "FINISHER_SYNC"))] == []
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"


def test_the_sampler_sees_a_staging_peak_that_lasts_a_tenth_of_a_second(tmp_path: Path) -> None:
    """The tiny bench's baseline holds its zip and extraction for ~0.1 s; at one sample per 0.2 s it was missed."""
    staging, archive = tmp_path / "staging", tmp_path / "archive"
    staging.mkdir(), archive.mkdir()
    with TimelineSampler("http://127.0.0.1:9", staging, archive) as sampler:
        time.sleep(0.03)
        (staging / "zip").write_bytes(b"z" * 4096)
        time.sleep(0.1)
        (staging / "zip").unlink()
        time.sleep(0.03)
    assert sampler.staging_peak == 4096
    assert sampler.next_interval(0.0) == 0.02 and sampler.next_interval(60.0) == 0.2
