"""Sync options of one work: defaults ← the site file (``site-sync.yml``) ← the work's ``config/sync.yml``.

Mappings merge key by key (deeply); lists and scalars replace. Each layer is validated as soon as it is
merged, so an invalid file is named together with the offending key (``SyncConfigInvalid``).

A restored work's own file comes from the bag, not from the operator: only the keys of ``WORK_ALLOWED_KEYS``
(audit arguments) are taken from it; any other key is ignored and logged, never an error. Where a work goes
(the archive root: the finisher's settings only; the web destination and its replace policy: settings and
site-sync.yml) is never decided by the bag it came in.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from onprem.finisher.errors import SyncConfigInvalid

logger = logging.getLogger(__name__)

SITE_FILE_NAME = "site-sync.yml"
WORK_FILE_RELPATH = Path("config") / "sync.yml"
#: the only keys a work's own file may set: harmless audit arguments, validated like the site file's
WORK_ALLOWED_KEYS = frozenset({("audit", "pre"), ("audit", "post")})


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class AuditOptions(_Options):
    #: audit-tool arguments before the sync (→ LOCAL_AUDIT_OPTIONS) and on the archive copy (→ REPO_AUDIT_OPTIONS)
    pre: list[str] = Field(default_factory=list)
    post: list[str] = Field(default_factory=list)

    @field_validator("pre", "post")
    @classmethod
    def _no_whitespace(cls, value: list[str]) -> list[str]:
        # the script splits these on whitespace, like the previous pipeline did
        for arg in value:
            if not arg or any(ch.isspace() for ch in arg):
                raise ValueError(f"audit argument {arg!r} is empty or contains whitespace")
        return value


class SyncTargets(_Options):
    # no ``archive`` key: the archive root is the finisher's archive_root, where status and checks look for it
    web: str | None = None  # → -w webParent, an s3://bucket/prefix (None: no web copy)
    replace: bool = False  # → -W (the archive copy is always replaced: -A)
    update_web: bool = True  # False → NO_REFRESH_WEB=Yes

    @field_validator("web")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("s3://") and len(value) > 5):
            raise ValueError(f"{value!r} is not an s3://bucket/prefix URL")
        return value


class SyncOptions(_Options):
    audit: AuditOptions = AuditOptions()
    sync: SyncTargets = SyncTargets()


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new mapping: ``override`` on top of ``base``, mappings merged recursively, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def default_options(web_parent: str | None) -> dict[str, Any]:
    """The built-in layer: the web target from the finisher's settings."""
    return {"sync": {"web": web_parent}}


def allowed_work_options(layer: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The part of a work's own options in ``WORK_ALLOWED_KEYS``, and the dotted names of every key left out."""
    allowed: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in layer.items():
        if not isinstance(value, dict) or not value:
            ignored.append(str(key))
            continue
        for sub_key, sub_value in value.items():
            if (key, sub_key) in WORK_ALLOWED_KEYS:
                allowed.setdefault(key, {})[sub_key] = sub_value
            else:
                ignored.append(f"{key}.{sub_key}")
    return allowed, ignored


def _validate(layers: dict[str, Any], work_rid: str, source: str) -> SyncOptions:
    try:
        return SyncOptions.model_validate(layers)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or '(top level)'}: {issue['msg']}"
            for issue in err.errors()
        )
        raise SyncConfigInvalid(work_rid, f"invalid sync options in {source}: {problems}") from err


def read_options_file(path: Path, work_rid: str) -> dict[str, Any]:
    """The mapping of one YAML options file ({} when it is absent or empty); SyncConfigInvalid when unreadable."""
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SyncConfigInvalid(work_rid, f"unreadable sync options file {path}: {err}") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SyncConfigInvalid(work_rid, f"invalid sync options in {path}: (top level): expected a mapping")
    return loaded


def merge_options(defaults: dict[str, Any], layers: list[tuple[str, dict[str, Any]]], work_rid: str) -> SyncOptions:
    """Merge ``layers`` (source name, mapping) in order on top of ``defaults``; the first invalid one is named."""
    merged = deep_merge({}, defaults)
    options = _validate(merged, work_rid, "the default sync options")
    for source, layer in layers:
        merged = deep_merge(merged, layer)
        options = _validate(merged, work_rid, source)
    return options


def load_sync_options(work_dir: Path, work_rid: str, *, config_dir: Path | None,
                      web_parent: str | None) -> SyncOptions:
    """The effective options of the work at ``work_dir``: defaults ← site-sync.yml ← the allowed keys of the
    work's config/sync.yml (the others logged as ignored, with the work, the file and the keys)."""
    layers = []
    if config_dir:
        site = config_dir / SITE_FILE_NAME
        layers.append((str(site), read_options_file(site, work_rid)))
    work_file = work_dir / WORK_FILE_RELPATH
    allowed, ignored = allowed_work_options(read_options_file(work_file, work_rid))
    if ignored:
        logger.warning("%s: ignored in the work's own %s: %s (only %s may be set by a work; the archive, web "
                       "and replace policy come from the operator's configuration)", work_rid, work_file,
                       ", ".join(ignored), ", ".join(".".join(key) for key in sorted(WORK_ALLOWED_KEYS)),
                       extra={"work_rid": work_rid, "file": str(work_file), "ignored_keys": ignored})
    layers.append((str(work_file), allowed))
    return merge_options(default_options(web_parent), layers, work_rid)
