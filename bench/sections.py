"""The end-to-end sections: pipeline vs pipeline on the range-fair S3 stand-in, in a memory cgroup, through a capped
proxy, and two finishers sharing one queue. Each fills a table of the report and the numbers the goals are judged
on. Ours runs on its production defaults everywhere; the baselines get as many connections (``ctx.transfer``)."""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3

from bench.cgroup import CgroupUnavailable, probe_memory_cgroup
from bench.context import MIB, BenchContext, median
from bench.e2e import PipelineRun
from bench.loopfs import LoopFsUnavailable, loop_ext4, write_accounting_ratio
from bench.ours import connections
from bench.raw import get_throughput
from bench.report import Section
from bench.stage_sections import RANGED_SPAN
from harness.proxy import ShapingProxy

__all__ = ["cgroup_section", "e2e_section", "proxy_section"]

E2E_COLUMNS = ["bag", "pipeline", "median s", "MB/s", "written/bag", "read/bag", "staging peak/bag", "max RSS MiB",
               "ok", "runs s"]


def _row(label: str, name: str, runs: list[PipelineRun]) -> list[object]:
    seconds = median([r.seconds for r in runs])
    payload = runs[0].payload_bytes
    return [label, name, seconds, payload / seconds / 1e6, median([r.write_bytes / payload for r in runs]),
            median([r.read_bytes / payload for r in runs]), max(r.staging_peak_bytes for r in runs) / payload,
            max(r.max_process_rss for r in runs) / MIB, f"{sum(r.ok for r in runs)}/{len(runs)}",
            " ".join(f"{r.seconds:.2f}" for r in runs)]


def _label(ctx: BenchContext, bags: str) -> str:
    staged = ctx.staged(bags)
    files = sum(s.bag.files for s in staged)
    size = sum(s.bag.payload_bytes for s in staged)
    return f"{bags} ({size / MIB:.0f} MiB, {files} files)"


def _compare(ctx: BenchContext, key: str, bags: str, runs: dict[str, list[PipelineRun]]) -> dict[str, float]:
    base, ours = median([r.seconds for r in runs["baseline"]]), median([r.seconds for r in runs["ours"]])
    payload = runs["ours"][0].payload_bytes
    facts = {"baseline_s": base, "ours_s": ours, "speedup": base / ours, "ours_bytes_per_s": payload / ours,
             "payload_bytes": payload, "zip_bytes": runs["ours"][0].zip_bytes,
             "ours_written_per_byte": median([r.write_bytes / payload for r in runs["ours"]]),
             "baseline_written_per_byte": median([r.write_bytes / payload for r in runs["baseline"]]),
             "ours_read_per_byte": median([r.read_bytes / payload for r in runs["ours"]]),
             "ours_staging_peak_per_byte": max(r.staging_peak_bytes for r in runs["ours"]) / payload,
             "baseline_staging_peak_per_byte": max(r.staging_peak_bytes for r in runs["baseline"]) / payload,
             "ours_max_rss": max(r.max_process_rss for r in runs["ours"]),
             "all_ok": all(r.ok for rs in runs.values() for r in rs)}
    if "rclone" in runs:
        rclone = median([r.seconds for r in runs["rclone"]])
        facts.update(rclone_s=rclone, speedup_vs_rclone=rclone / ours,
                     rclone_written_per_byte=median([r.write_bytes / payload for r in runs["rclone"]]))
    if not facts["all_ok"]:
        # a failed run proves nothing about speed: no ratio is reported from it
        facts["speedup"] = float("nan")
        facts["speedup_vs_rclone"] = float("nan")
    ctx.raw[key] = facts
    return facts


def _stage_notes(section: Section, runs_by_bag: dict[str, dict[str, list[PipelineRun]]]) -> None:
    """Where the time goes: each pipeline's steps (median seconds) per bag."""
    for bags, runs in runs_by_bag.items():
        for name, rs in runs.items():
            steps = list(dict.fromkeys(step for r in rs for step in r.stages))
            if steps:
                section.notes.append(f"{bags} {name} steps (median s): " + ", ".join(
                    f"{step} {median([r.stages.get(step, 0.0) for r in rs]):.2f}" for step in steps))


def _archive_fs_rows(ctx: BenchContext, section: Section, bags: str) -> None:
    """``bags`` again, baseline and ours, with each run's archive root on a loop-mounted ext4 (staging on the
    scratch disk): ours stages the works under the archive root, so its sync still links; the baseline copies."""
    payload = sum(s.bag.payload_bytes for s in ctx.staged(bags))
    key = f"e2e_{bags}_archive_fs"
    try:
        # one run's archive at a time (removed once checked): twice the payload of room, the free bytes ours keeps
        # on the filesystem its payload is written to (checked there), and ext4's own; a sparse image
        keep_free = int(ctx.ours_settings.get("fetch", {}).get("min_free_bytes", 2 * 2**30))
        with loop_ext4(ctx.scratch, 2 * payload + keep_free + 256 * MIB, "archive-fs") as archive_fs:
            counted = write_accounting_ratio(archive_fs.mount)
            runs = ctx.alternate([ctx.baseline, ctx.ours], bags, ctx.options.repeats, archive_base=archive_fs.mount)
    except LoopFsUnavailable as err:
        ctx.raw[key] = {"measured": False, "reason": str(err)}
        section.notes.append(f"{bags} with the archive on another filesystem: not measured ({err})")
        return
    section.rows += [_row(f"{_label(ctx, bags)}, archive on another fs", name, rs) for name, rs in runs.items()]
    written = {name: median([r.write_bytes / payload for r in rs]) for name, rs in runs.items()}
    base, ours = (median([r.seconds for r in runs[name]]) for name in ("baseline", "ours"))
    all_ok = all(r.ok for rs in runs.values() for r in rs)
    ctx.raw[key] = {"measured": True, "write_bytes_counted_per_byte": counted, "baseline_s": base, "ours_s": ours,
                    "speedup": base / ours if all_ok else float("nan"), "ours_written_per_byte": written["ours"],
                    "baseline_written_per_byte": written["baseline"], "all_ok": all_ok}
    section.notes.append(f"{bags} with the archive on a loop-mounted ext4 (staging on the scratch disk; the storage "
                         f"counters see {counted:.2f} of each byte written there): ours is "
                         f"{ctx.raw[key]['speedup']:.2f}x the baseline, writing {written['ours']:.2f} bytes per bag "
                         f"byte (the baseline {written['baseline']:.2f})")


def e2e_section(ctx: BenchContext) -> None:
    """The bdrc, 5 MiB-files and small-files bags: baseline, rclone pipeline and ours, A B C A B C …"""
    section = ctx.report.section("End to end on the range-fair S3 stand-in (message sent -> work in archive, "
                                 "message deleted)", E2E_COLUMNS)
    runs_by_bag: dict[str, dict[str, list[PipelineRun]]] = {}
    for bags in [b.strip() for b in ctx.options.e2e_bags.split(",") if b.strip()]:
        runs = ctx.alternate([ctx.baseline, ctx.rclone, ctx.ours], bags, ctx.options.repeats)
        runs_by_bag[bags] = runs
        facts = _compare(ctx, f"e2e_{bags}", bags, runs)
        label = _label(ctx, bags)
        section.rows += [_row(label, name, rs) for name, rs in runs.items()]
        section.notes.append(f"{bags}: ours is {facts['speedup']:.2f}x the baseline, "
                             f"{facts['speedup_vs_rclone']:.2f}x the rclone pipeline")
    for bags in [b.strip() for b in ctx.options.archive_fs_bags.split(",") if b.strip() in runs_by_bag]:
        _archive_fs_rows(ctx, section, bags)
    _stage_notes(section, runs_by_bag)
    if "bdrc" in runs_by_bag:
        ctx.timelines["bdrc"] = {name: rs[len(rs) // 2] for name, rs in runs_by_bag["bdrc"].items()}
    slowest = ctx.raw.get("slowest_raw")
    main_key = "e2e_bdrc" if "e2e_bdrc" in ctx.raw else "e2e_main"
    if slowest and main_key in ctx.raw:
        fraction = ctx.raw[main_key]["ours_bytes_per_s"] / slowest["bytes_per_s"]
        ctx.raw[main_key]["fraction_of_slowest_raw"] = fraction
        section.notes.append(f"{main_key.removeprefix('e2e_')}: ours runs at {fraction:.0%} of the slowest raw stage "
                             f"({slowest['stage']}, {slowest['bytes_per_s'] / 1e6:.0f} MB/s)")
    if ctx.options.cold_starts:
        startup = {p.name: ctx.empty_run_seconds(p) for p in (ctx.baseline, ctx.ours)}
        ctx.raw["empty_queue_run_s"] = startup
        section.notes.append("each process was started and polling before its message was sent (a long-running "
                             "finisher), so start-up is not in the times above; a cold process on an empty queue "
                             "(start-up + one 1 s empty poll): " + ", ".join(f"{name} {s:.2f} s"
                                                                            for name, s in startup.items()))
    section.notes.append(f"ours: finisher run on its production defaults ({_ours_fetch(ctx)}); baseline = "
                         f"download_file ({ctx.transfer.describe()}) -> zipfile.extractall -> bagit validate -> "
                         f"rsync -a; rclone = rclone copyto --multi-thread-streams {ctx.transfer.concurrency} "
                         "(rclone's other defaults) -> the same steps")
    section.notes.append("written/read per bag byte: /proc/<pid>/io write_bytes/read_bytes of the whole process "
                         "tree (storage level; reads served from page cache are not counted); staging peak: most "
                         "bytes under the staging folder (and hidden folders of the archive root) at once, sampled "
                         "every 0.02 s at first, 0.2 s from about 4 s")


def _ours_fetch(ctx: BenchContext) -> str:
    fetch = ctx.ours_settings.get("fetch", {})
    parts = fetch.get("part_size") or fetch.get("segment_size")
    return f"{connections(ctx.ours_settings)} connections" + (f", {int(parts) // MIB} MiB parts" if parts else "")


def cgroup_section(ctx: BenchContext) -> None:
    """The memory-check bag, each run in its own memory cgroup smaller than the bag."""
    limit = ctx.options.memory_limit_mib * MIB
    section = ctx.report.section(f"End to end in a {ctx.options.memory_limit_mib} MiB memory cgroup "
                                 "(the bag cannot stay in page cache)", [*E2E_COLUMNS, "cgroup peak MiB"])
    available, reason = probe_memory_cgroup()
    ctx.raw["cgroup"] = {"available": available, "detail": reason}
    if not available:
        section.notes.append(f"not run: no memory cgroup could be made ({reason})")
        return
    try:
        runs = ctx.alternate([ctx.baseline, ctx.ours], "memory", ctx.options.repeats, memory_limit=limit)
    except CgroupUnavailable as err:
        section.notes.append(f"not run: {err}")
        return
    facts = _compare(ctx, "cgroup_memory", "memory", runs)
    label = _label(ctx, "memory")
    for name, rs in runs.items():
        peaks = [r.cgroup_peak_bytes for r in rs if r.cgroup_peak_bytes is not None]
        section.rows.append([*_row(label, name, rs), max(peaks) / MIB if peaks else None])
    section.notes.append(f"ours is {facts['speedup']:.2f}x the baseline; {reason}")
    _stage_notes(section, {"memory": runs})


def proxy_section(ctx: BenchContext) -> None:
    """A capped link (S3 over a WAN): each connection at ``proxy_rate_mb_s`` and all of them together at
    ``proxy_link_mb_s``; the raw ranged GET at ours' connections and part size, and both pipelines (the baseline with
    as many connections), same link, same run."""
    o = ctx.options
    rate, link = o.proxy_rate_mb_s * 1e6, (o.proxy_link_mb_s * 1e6 or None)
    fetch = ctx.ours_settings.get("fetch", {})
    part = int(fetch.get("part_size") or fetch.get("segment_size") or 64 * MIB)
    threads = connections(ctx.ours_settings)
    title = f"Through a loopback proxy capping each connection at {o.proxy_rate_mb_s:.0f} MB/s"
    section = ctx.report.section(title + (f" and the link at {o.proxy_link_mb_s:.0f} MB/s" if link else ""),
                                 E2E_COLUMNS)
    staged = ctx.staged("proxy")[0]
    upstream = urlsplit(ctx.aws.endpoint_url)
    with ShapingProxy(upstream.hostname or "127.0.0.1", upstream.port or 80, rate_bytes_per_s=rate,
                      link_bytes_per_s=link) as proxy:
        s3 = boto3.client("s3", region_name=ctx.aws.region, endpoint_url=proxy.url)
        span = min(staged.size, RANGED_SPAN)
        single = get_throughput(s3, staged.bucket, staged.key, staged.size, span=span)
        # the link's ceiling for ours: its own connections, over ranges that give every connection work
        ranged = min(part, -(-staged.size // threads))
        parts = median([get_throughput(s3, staged.bucket, staged.key, staged.size, part_bytes=ranged,
                                       concurrency=threads) for _ in range(o.repeats)])
        runs = ctx.alternate([ctx.baseline, ctx.ours], "proxy", o.repeats, endpoint=proxy.url)
    facts = _compare(ctx, "proxy_main", "proxy", runs)
    facts["raw_ranged_bytes_per_s"] = parts
    facts["ours_of_raw"] = facts["ours_bytes_per_s"] * staged.size / staged.bag.payload_bytes / parts
    section.rows += [_row(_label(ctx, "proxy"), name, rs) for name, rs in runs.items()]
    ctx.raw["proxy_raw"] = {"single_bytes_per_s": single, "ranged_bytes_per_s": parts, "ranged_part_bytes": ranged,
                            "ranged_concurrency": threads}
    section.notes.append(f"raw GET through the proxy: one stream {single / 1e6:.0f} MB/s, {threads} threads x "
                         f"{ranged / MIB:.0f} MiB ranges over the whole zip {parts / 1e6:.0f} MB/s; ours on its "
                         f"defaults, the baseline {ctx.transfer.describe()}")
    section.notes.append(f"ours is {facts['speedup']:.2f}x the baseline and moves the zip at "
                         f"{facts['ours_of_raw']:.0%} of the raw ranged GET on the same link (ours_of_raw: zip bytes "
                         "per second of ours, message to archive, / the raw GET's)")
    _stage_notes(section, {"proxy": runs})
