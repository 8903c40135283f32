"""The extraction schedule of one de-bag: tag files and payload members on bounded executors, in file order.

Payload members are hashed with the algorithms the bag's manifest file names declare, so they are extracted
while the tag files are read and parsed (on their own thread: a manifest may lie at the end of a zip that is
still arriving). A member is journaled as verified once its digests match its bag's manifest; members
journaled by an earlier run are not redone (their digests are checked with all the others by verify_work).
The first failure cancels everything else.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onprem.finisher.debag.journal import VerifiedJournal
from onprem.finisher.debag.model import (
    BagManifest,
    DebagSettings,
    Extractor,
    ManifestLoader,
    MemberDigest,
    MemberTarget,
    WorkPlan,
    declared_algorithms,
    nfc,
)
from onprem.finisher.debag.source import MemberSource
from onprem.finisher.errors import BagInvalid, ExtractionCancelled
from onprem.finisher.progress import Progress

logger = logging.getLogger(__name__)


@dataclass
class Extracted:
    """What the schedule produced: manifests by work RID, digests by member name, members resumed."""

    manifests: dict[str, BagManifest]
    digests: dict[str, MemberDigest]
    resumed: int


def extract_members(plans: list[WorkPlan], temp_dir: Path, extractor: Extractor, source: MemberSource,
                    journal: VerifiedJournal, settings: DebagSettings, progress: Progress,
                    load_manifest: ManifestLoader) -> Extracted:
    """Extract every member of ``plans`` into ``temp_dir/<RID>/``, hashing payload while writing it; each bag's tag
    files are read by ``load_manifest`` on a task of their own, beside the payload."""
    hashed = {plan.work_rid: declared_algorithms(str(tag.bag_path) for tag in plan.tag_files) for plan in plans}
    done = Extracted({}, {}, 0)
    todo: list[tuple[WorkPlan, MemberTarget, Path]] = []
    for plan in plans:
        for item in plan.payload:
            target = temp_dir / plan.work_rid / item.target
            reused = journal.reusable(item.member, target, hashed[plan.work_rid])
            if reused is not None:
                done.digests[item.member.name] = reused
            else:
                todo.append((plan, item, target))
    done.resumed = len(done.digests)
    todo.sort(key=lambda entry: entry[1].member.info.header_offset)  # file order: the order bytes arrive in
    progress.start(sum(item.member.info.file_size for _, item, _ in todo), len(todo))
    cancelled = threading.Event()
    waiting: dict[str, list[tuple[MemberDigest, MemberTarget]]] = defaultdict(list)

    def payload_task(item: MemberTarget, target: Path, algorithms: tuple[str, ...]) -> MemberDigest:
        source.wait_for(item.member, cancelled)
        return extractor.extract(item.member, target, algorithms, cancelled)

    def tag_task(plan: WorkPlan) -> BagManifest:
        return _extract_tag_files(plan, temp_dir, extractor, source, settings, cancelled, load_manifest)

    with (ThreadPoolExecutor(max_workers=max(settings.workers, 1), thread_name_prefix="debag") as pool,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="debag-tags") as tags):
        tag_futures = {tags.submit(tag_task, plan): plan for plan in plans if plan.bag}
        payload = {pool.submit(payload_task, item, target, hashed[plan.work_rid]): (plan, item)
                   for plan, item, target in todo}
        try:
            for future in as_completed([*tag_futures, *payload]):  # one waiter for all: linear in the members
                if future.exception() is not None:
                    raise _first_error([*tag_futures, *payload])
                if future in tag_futures:
                    plan = tag_futures[future]
                    done.manifests[plan.work_rid] = _checked(future.result(), plan, hashed[plan.work_rid])
                    for digest, item in waiting.pop(plan.work_rid, []):
                        _journal_if_verified(journal, digest, done.manifests[plan.work_rid], item)
                    continue
                plan, item = payload[future]
                digest = done.digests[item.member.name] = future.result()
                if plan.bag and plan.work_rid not in done.manifests:
                    waiting[plan.work_rid].append((digest, item))
                else:
                    _journal_if_verified(journal, digest, done.manifests.get(plan.work_rid), item)
        except BaseException:
            cancelled.set()
            for future in (*tag_futures, *payload):
                future.cancel()
            raise
    if done.resumed:
        logger.info("%s: %d members already verified before a restart, not redone", plans[0].work_rid,
                    done.resumed, extra={"work_rid": plans[0].work_rid})
    return done


def _extract_tag_files(plan: WorkPlan, temp_dir: Path, extractor: Extractor, source: MemberSource,
                       settings: DebagSettings, cancelled: threading.Event,
                       load_manifest: ManifestLoader) -> BagManifest:
    paths = {}
    for tag in plan.tag_files:
        target = temp_dir / plan.work_rid / tag.target
        source.wait_for(tag.member, cancelled)
        extractor.extract(tag.member, target, (), cancelled, report=False)
        paths[str(tag.bag_path)] = target
    return load_manifest(plan, temp_dir / plan.work_rid / plan.bag_dir, paths, settings)


def _checked(manifest: BagManifest, plan: WorkPlan, hashed: tuple[str, ...]) -> BagManifest:
    unhashed = sorted(set(manifest.algorithms) - set(hashed))
    if unhashed:
        raise BagInvalid(plan.work_rid, f"manifest algorithm(s) {', '.join(unhashed)} not declared by a manifest "
                                        "file name at the bag's root")
    return manifest


def _journal_if_verified(journal: VerifiedJournal, digest: MemberDigest, manifest: BagManifest | None,
                         item: MemberTarget) -> None:
    if manifest is None:
        journal.record(digest)  # a plain zip: its CRC is all there is to check
        return
    expected = manifest.payload.get(nfc(str(item.bag_path)))
    if expected is not None and all(digest.digests.get(alg) == value for alg, value in expected.items()):
        journal.record(digest)


def _first_error(futures: list[Future[Any]]) -> BaseException:
    """The real failure among finished futures (not the members cancelled because of it)."""
    errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if not isinstance(e, ExtractionCancelled)]
    return (real or errors)[0]  # type: ignore[return-value]
