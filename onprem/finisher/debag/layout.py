"""Where each zip member goes: the bags (``RID.bag/``) or plain work folders a zip holds, and their targets.

Staging layout per work: ``<RID>/`` holds the bag's ``data/`` content, ``<RID>/<RID>.bag/`` its tag files
(bagit.txt, bag-info.txt, manifests); a plain work folder ``RID/`` is copied as it is.

Which works a zip may hold: exactly the expected ones. A fetched zip is expected to hold the work of its key
(``{RID}``: a ``W1A.bag.zip`` holding ``W1B`` is refused, never archived as W1B). Multi-work mode: the caller
names the set (``finisher ingest`` of a hand-delivered zip holding several works); every work found must be in
it (UnexpectedWork) and every work in it must be found (MissingWork). A bag at the zip's root takes the key's RID.

Plain zips (no bagit.txt anywhere): allowed only when ``DebagSettings.allow_plain_zip`` is on *and* the zip is
not named ``*.bag.zip`` (a hand-delivered ``RID.zip``); a ``.bag.zip`` without a bag is refused (NoBagInZip):
it would be archived with no fixity beyond the zip's CRCs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from contract.keys import STAGED_BAG_SUFFIX, is_rid
from onprem.finisher.debag.model import PAYLOAD_DIR, MemberTarget, SafeMember, WorkPlan
from onprem.finisher.errors import BagIncomplete, BagInvalid, MissingWork, NoBagInZip, UnexpectedWork

#: a zip named so must hold a bag: never taken as a plain zip
BAG_ZIP_SUFFIX = ".bag.zip"
#: folders that mark a BDRC work folder in a plain (non-bag) zip
WORK_MARKERS = frozenset({"images", "archive", "sources", "eBooks"})
#: image-group folders (``W1NLM4700-I1KG1``) are parts of a work, never works themselves
_IMAGE_GROUP_RE = re.compile(r"^[A-Za-z0-9_]+-I[A-Za-z0-9]+$")


def plan_works(members: list[SafeMember], work_rid: str, *, allow_plain_zip: bool, zip_name: str,
               expected_rids: Iterable[str] | None = None) -> list[WorkPlan]:
    """Split a zip's members into works, exactly ``expected_rids`` (default ``{work_rid}``), a zip without a bag
    only with ``allow_plain_zip`` and never a ``.bag.zip``; every file member belongs to one work or this raises."""
    files = [m for m in members if not m.is_dir]
    roots = _outermost(p.path.parent for p in files if p.path.name == "bagit.txt")
    if roots:
        plans = [_plan(root, members, work_rid, bag=True) for root in roots]
    elif not allow_plain_zip or zip_name.lower().endswith(BAG_ZIP_SUFFIX):
        raise NoBagInZip(work_rid, f"{zip_name} holds no bag (no bagit.txt): a .bag.zip must hold a bag, and only "
                                   "a plain zip (RID.zip) may be taken without one, when plain zips are allowed")
    else:
        plans = [_plan(root, members, work_rid, bag=False) for root in _plain_roots(files, work_rid)]
    rids = [plan.work_rid for plan in plans]
    if len(set(rids)) != len(rids):
        raise BagInvalid(work_rid, f"the zip holds the same work twice: {sorted(rids)}")
    _check_expected(rids, frozenset(expected_rids or (work_rid,)), work_rid, zip_name)
    claimed = {id(t.member) for plan in plans for t in (*plan.payload, *plan.tag_files)}
    stray = [m.name for m in files if id(m) not in claimed]
    if stray:
        raise BagIncomplete(work_rid, f"{len(stray)} file(s) outside any work, e.g. {stray[0]}", details=stray)
    return plans


def _check_expected(rids: list[str], expected: frozenset[str], work_rid: str, zip_name: str) -> None:
    unexpected = sorted(set(rids) - expected)
    missing = sorted(expected - set(rids))
    found = ", ".join(rids)
    if unexpected:
        raise UnexpectedWork(work_rid, f"{zip_name} holds {', '.join(unexpected)}, not expected (it holds {found}; "
                                       f"expected {', '.join(sorted(expected))}): a zip only delivers the works "
                                       "it was fetched or ingested for", details=unexpected)
    if missing:
        raise MissingWork(work_rid, f"{zip_name} does not hold {', '.join(missing)} (it holds {found}): a zip "
                                    "must hold every work it was fetched or ingested for", details=missing)


def _outermost(paths: Iterable[PurePosixPath]) -> list[PurePosixPath]:
    roots: list[PurePosixPath] = []
    for path in sorted(set(paths), key=lambda p: (len(p.parts), str(p))):
        if not any(root == path or root in path.parents for root in roots):
            roots.append(path)
    return roots


def _rid_of_root(root: PurePosixPath, work_rid: str) -> str:
    if root == PurePosixPath("."):
        return work_rid
    name = root.name.removesuffix(STAGED_BAG_SUFFIX)
    if not is_rid(name):
        raise BagInvalid(work_rid, f"bag folder {str(root)!r} is not named after a work RID")
    return name


def _under(path: PurePosixPath, root: PurePosixPath) -> PurePosixPath | None:
    """``path`` relative to ``root`` when it lies strictly under it (compared by parts: no path is built)."""
    if root == PurePosixPath("."):
        return path
    depth = len(root.parts)
    if len(path.parts) > depth and path.parts[:depth] == root.parts:
        return PurePosixPath(*path.parts[depth:])
    return None


def _plan(root: PurePosixPath, members: list[SafeMember], work_rid: str, *, bag: bool) -> WorkPlan:
    """The work at ``root``: a bag's ``data/…`` is its payload and the rest its tag files; a plain folder is payload."""
    plan = WorkPlan(work_rid=_rid_of_root(root, work_rid), bag=bag, root=root)
    for member in members:
        rel = _under(member.path, root)
        if rel is None:
            continue
        if bag and not (rel.parts[0] == PAYLOAD_DIR and len(rel.parts) > 1):
            if not member.is_dir:
                plan.tag_files.append(MemberTarget(member, plan.bag_dir / rel, str(rel)))
            continue
        target = PurePosixPath(*rel.parts[1:]) if bag else rel
        if member.is_dir:
            plan.dirs.append((member, target))
        elif bag and target.parts[0] == str(plan.bag_dir):
            raise BagInvalid(plan.work_rid, f"payload {str(rel)!r} collides with the tag folder {plan.bag_dir}")
        else:
            plan.payload.append(MemberTarget(member, target, str(rel) if bag else None))
    return plan


def _is_work_folder(folder: PurePosixPath, rid: str, files: list[SafeMember]) -> bool:
    for member in files:
        rel = _under(member.path, folder)
        if rel is not None and len(rel.parts) > 1 and (rel.parts[0] in WORK_MARKERS
                                                        or rel.parts[0].startswith(f"{rid}-I")):
            return True
    return False


def _plain_roots(files: list[SafeMember], work_rid: str) -> list[PurePosixPath]:
    folders = {parent for m in files for parent in m.path.parents if parent != PurePosixPath(".")}
    found = [f for f in folders if is_rid(f.name) and not _IMAGE_GROUP_RE.match(f.name)
             and _is_work_folder(f, f.name, files)]
    if found:
        return _outermost(found)
    if _is_work_folder(PurePosixPath("."), work_rid, files):
        return [PurePosixPath(".")]
    raise BagInvalid(work_rid, "the zip holds neither a bag nor a work folder (RID/images, RID/RID-I…)")
