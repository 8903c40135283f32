"""Sync options of one work: defaults ← the site file (``site-sync.yml``) ← the work's ``config/sync.yml``.

Mappings merge key by key (deeply); lists and scalars replace. Each layer is validated as soon as it is
merged, so an invalid file is named together with the offending key (``SyncConfigInvalid``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from onprem.finisher.errors import SyncConfigInvalid

SITE_FILE_NAME = "site-sync.yml"
WORK_FILE_RELPATH = Path("config") / "sync.yml"


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
    archive: str | None = None  # → -a archiveParent (None: no archive sync)
    web: str | None = None  # → -w webParent, an s3://bucket/prefix (None: no web copy)
    replace: bool = False  # → -A and -W
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


def default_options(archive_root: Path | None, web_parent: str | None) -> dict[str, Any]:
    """The built-in layer: archive and web targets from the finisher's settings."""
    return {"sync": {"archive": str(archive_root) if archive_root else None, "web": web_parent}}


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


def load_sync_options(
    work_dir: Path, work_rid: str, *, config_dir: Path | None, archive_root: Path | None, web_parent: str | None,
) -> SyncOptions:
    """The effective options of the work at ``work_dir``: defaults ← site-sync.yml ← config/sync.yml."""
    files = [config_dir / SITE_FILE_NAME] if config_dir else []
    files.append(work_dir / WORK_FILE_RELPATH)
    layers = [(str(path), read_options_file(path, work_rid)) for path in files]
    return merge_options(default_options(archive_root, web_parent), layers, work_rid)
