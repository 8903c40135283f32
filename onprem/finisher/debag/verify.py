"""Fixity of one work from the digests taken while extracting: no second read of the payload.

Checks, in this order, each raising with every problem in ``details``: payload checksums, completeness
(missing / unexpected files), Payload-Oxum, tag-manifest checksums.
"""

from __future__ import annotations

from pathlib import Path

from onprem.finisher.debag.model import BagManifest, MemberDigest, StagedWork, WorkPlan, nfc
from onprem.finisher.errors import BagIncomplete, ChecksumMismatch, OxumMismatch

NO_FIXITY = "no fixity available: plain zip without a bag"


def verify_work(plan: WorkPlan, manifest: BagManifest | None, digests: dict[str, MemberDigest],
                staging_dir: Path) -> StagedWork:
    """Raise a BagInvalid subclass naming the work and file, or describe the verified work."""
    sizes = [digests[item.member.name].size for item in plan.payload]
    work = StagedWork(
        work_rid=plan.work_rid, path=staging_dir / plan.work_rid, bag=plan.bag,
        algorithms=manifest.algorithms if manifest else (), files=len(sizes), bytes=sum(sizes),
        fixity_checked=manifest is not None,
        warnings=tuple(manifest.warnings) if manifest else (NO_FIXITY,),
    )
    if manifest is None:
        return work
    found = {nfc(str(item.bag_path)): digests[item.member.name].digests for item in plan.payload}
    _check_digests(plan.work_rid, manifest.payload, found)
    missing = sorted(set(manifest.payload) - set(found))
    unexpected = sorted(set(found) - set(manifest.payload))
    if missing or unexpected:
        details = [f"missing {p} (listed in the manifest, not in the zip)" for p in missing]
        details += [f"unexpected {p} (in the zip, listed in no manifest)" for p in unexpected]
        raise BagIncomplete(plan.work_rid, _summary("bag incomplete: " + details[0], details), details=details)
    if manifest.oxum is not None and manifest.oxum != (work.bytes, work.files):
        raise OxumMismatch(plan.work_rid, f"Payload-Oxum {manifest.oxum[0]}.{manifest.oxum[1]} declared, "
                                          f"payload is {work.bytes}.{work.files}")
    missing_tags = sorted(set(manifest.tags) - set(manifest.tag_digests))
    if missing_tags:
        raise BagIncomplete(plan.work_rid, f"tag file {missing_tags[0]} listed in a tag manifest is missing",
                            details=missing_tags)
    _check_digests(plan.work_rid, manifest.tags, manifest.tag_digests)
    return work


def _check_digests(work_rid: str, expected: dict[str, dict[str, str]], found: dict[str, dict[str, str]]) -> None:
    details = []
    for path in sorted(set(expected) & set(found)):
        for alg, want in sorted(expected[path].items()):
            got = found[path].get(alg)
            if got != want:
                details.append(f"checksum mismatch for {path} ({alg} expected {want}, got {got})")
    if details:
        raise ChecksumMismatch(work_rid, _summary(details[0], details), details=details)


def _summary(first: str, details: list[str]) -> str:
    return first if len(details) == 1 else f"{first} (and {len(details) - 1} more)"
