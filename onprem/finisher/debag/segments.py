"""The fetch plan of a zip: every byte before the central directory cut into spans (one entry each) and the spans
grouped into segments (one ranged read each), from the central directory alone. Pure.

A span is ``[start, end)`` of one entry: its local header, data, data descriptor and any gap up to the next entry
(the first span also takes the bytes before the first entry). The spans and the tail ``[start_dir, size)`` cover
the whole object, so the checksums of the segments combine into the object's. Segments are runs of consecutive
spans cut at entry boundaries, never over ``part_size``; the tag files' spans form segments of their own (read
first: the manifests must be known before the payload arrives). A member larger than ``part_size`` is a segment
by itself (its sub-ranges are read ahead on idle connections: ``read_ahead``). A zip smaller than ``concurrency`` x
``part_size`` is cut finer, so that it still fills every connection (``segment_size``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from enum import StrEnum

from onprem.finisher.debag.model import MemberTarget, WorkPlan


class Role(StrEnum):
    TAG = "tag"  #: a bag's tag file: read first
    PAYLOAD = "payload"  #: written to its final path in the work's temp dir
    SKIP = "skip"  #: a folder entry or macOS junk: read (its bytes count for the object's checksum), not written


@dataclass(frozen=True)
class Span:
    """The bytes ``[start, end)`` of one entry; ``target``/``plan`` for a file that is written."""

    info: zipfile.ZipInfo
    start: int
    end: int
    role: Role
    target: MemberTarget | None = None
    plan: WorkPlan | None = None


@dataclass
class Segment:
    """Consecutive spans read by one ranged read ``[start, end)``."""

    spans: list[Span] = field(default_factory=list)

    @property
    def start(self) -> int:
        return self.spans[0].start

    @property
    def end(self) -> int:
        return self.spans[-1].end

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def tags(self) -> bool:
        return self.spans[0].role is Role.TAG

    @property
    def members(self) -> list[Span]:
        return [span for span in self.spans if span.role is not Role.SKIP]


def make_spans(entries: list[zipfile.ZipInfo], start_dir: int, plans: list[WorkPlan]) -> list[Span]:
    """One span per entry in file order; the file members of ``plans`` are TAG or PAYLOAD, anything else SKIP."""
    roles: dict[int, tuple[Role, MemberTarget, WorkPlan]] = {}
    for plan in plans:
        for item in plan.tag_files:
            roles[id(item.member.info)] = (Role.TAG, item, plan)
        for item in plan.payload:
            roles[id(item.member.info)] = (Role.PAYLOAD, item, plan)
    ordered = sorted(entries, key=lambda info: info.header_offset)
    spans = []
    for n, info in enumerate(ordered):
        start = 0 if n == 0 else info.header_offset
        end = ordered[n + 1].header_offset if n + 1 < len(ordered) else start_dir
        role, item, plan = roles.get(id(info), (Role.SKIP, None, None))
        spans.append(Span(info, start, end, role, item, plan))
    return spans


#: the smallest segment a zip is cut into to fill the connections (below, a GET's latency costs more than it gains)
MIN_SEGMENT = 8 * 2**20


def segment_size(spans: list[Span], part_size: int, concurrency: int) -> int:
    """The size the payload is cut at: ``part_size`` for a large zip, smaller for one that would otherwise leave
    connections idle (never under MIN_SEGMENT, unless ``part_size`` is)."""
    payload = sum(span.end - span.start for span in spans if span.role is not Role.TAG)
    return min(part_size, max(MIN_SEGMENT, -(-payload // max(1, concurrency))))


def make_segments(spans: list[Span], part_size: int, concurrency: int = 1) -> list[Segment]:
    """Runs of consecutive spans, a tag file's run apart from the payload's: cut at the entry boundary nearest each
    multiple of ``segment_size`` from the first span (so a zip of ``concurrency`` x that size makes
    ``concurrency`` segments, not one more for the boundaries' slack), and before a run would pass ``part_size``
    (the cuts go on a whole segment size from there)."""
    size = segment_size(spans, part_size, concurrency)
    origin = spans[0].start if spans else 0
    boundary = origin + size
    segments: list[Segment] = []
    current = Segment()
    for span in spans:
        is_tag, length = span.role is Role.TAG, span.end - span.start
        passes = span.start + span.end > 2 * boundary  # the span's middle is past the next boundary
        over = bool(current.spans) and current.size + length > part_size
        if current.spans and (current.tags != is_tag or passes or over):
            segments.append(current)
            current = Segment()
            if over and not passes:
                boundary = span.start + size  # cut by the cap: the next cut a whole size on, no sliver before it
        while span.start + span.end > 2 * boundary:
            boundary += size
        current.spans.append(span)
    if current.spans:
        segments.append(current)
    return segments
