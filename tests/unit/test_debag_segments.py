"""The segment planner (debag/segments.py), pure: a zip smaller than concurrency x part size still fills every
connection; a large one is cut at the part size; cuts fall on member boundaries, and the segments cover the spans."""

from __future__ import annotations

import random
import zipfile

from onprem.finisher.debag.segments import MIN_SEGMENT, Role, Segment, Span, make_segments
from onprem.finisher.fetch.request import FetchSettings

MiB = 2**20
DEFAULTS = FetchSettings()


def _spans(sizes: list[int], tags: int = 3) -> list[Span]:
    """Tag files first (small), then payload members of ``sizes`` bytes, back to back."""
    spans, offset = [], 0
    for n, size in enumerate([4096] * tags + sizes):
        info = zipfile.ZipInfo(f"member{n}")
        spans.append(Span(info, offset, offset + size, Role.TAG if n < tags else Role.PAYLOAD))
        offset += size
    return spans


def _bdrc_like(total: int, seed: int) -> list[int]:
    """Images of 50-400 KiB and masters of 1-8 MiB, as the bench's bdrc profile, up to ``total`` bytes."""
    rng, sizes = random.Random(seed), []
    while sum(sizes) < total:
        sizes.append(rng.randint(50 << 10, 400 << 10) if rng.random() < 0.5 else rng.randint(1 * MiB, 8 * MiB))
    return sizes


def _payload(segments: list[Segment]) -> list[Segment]:
    return [segment for segment in segments if not segment.tags]


def _covers(spans: list[Span], segments: list[Segment]) -> bool:
    return [span for segment in segments for span in segment.spans] == spans


def test_a_zip_under_concurrency_times_part_size_fills_every_connection() -> None:
    for seed in range(5):
        spans = _spans(_bdrc_like(256 * MiB, seed))
        segments = make_segments(spans, DEFAULTS.part_size, DEFAULTS.max_concurrency)
        payload = _payload(segments)
        # 256 MiB at the defaults (64 MiB parts, 8 connections): 8 segments of ~32 MiB, not 4 of 64 MiB
        assert len(payload) == DEFAULTS.max_concurrency, [s.size // MiB for s in payload]
        assert all(s.size <= DEFAULTS.part_size for s in payload) and _covers(spans, segments)
        target = sum(s.size for s in payload) / len(payload)
        assert all(abs(s.size - target) <= 8 * MiB for s in payload)  # each end within half a member of its cut


def test_a_large_zip_is_cut_at_the_part_size_and_a_small_one_not_below_the_floor() -> None:
    spans = _spans(_bdrc_like(2048 * MiB, 7))
    segments = _payload(make_segments(spans, DEFAULTS.part_size, DEFAULTS.max_concurrency))
    assert all(s.size <= DEFAULTS.part_size for s in segments) and len(segments) >= 2048 // 64
    small = _spans([MiB] * 20)  # 20 MiB over 8 connections: 2.5 MiB each would cost more GETs than they gain
    assert [s.size for s in _payload(make_segments(small, DEFAULTS.part_size, 8))] == [8 * MiB, 8 * MiB, 4 * MiB]
    assert MIN_SEGMENT == 8 * MiB


def test_a_member_larger_than_a_segment_is_a_segment_by_itself() -> None:
    spans = _spans([MiB, 100 * MiB, MiB, MiB])
    segments = _payload(make_segments(spans, DEFAULTS.part_size, DEFAULTS.max_concurrency))
    assert [[span.end - span.start for span in s.spans] for s in segments] == [[MiB], [100 * MiB], [MiB, MiB]]
