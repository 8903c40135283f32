"""The finisher's typed settings: the environment config plus finisher overrides (a local file, then env vars).

Precedence, lowest first: ``config/<env>.yaml`` (``BDRC_ENV`` / ``BDRC_ENV_FILE``) → the optional settings file
(``FINISHER_SETTINGS_FILE``, YAML) → ``FINISHER_*`` environment variables → explicit overrides (CLI flags).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.loader import load_environment
from config.model import EnvironmentConfig
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.fetch.request import FetchSettings
from onprem.finisher.fetch.restore import DEFAULT_PRICES, TierPrice
from onprem.finisher.sync.stage import SyncSettings

SETTINGS_FILE_VAR = "FINISHER_SETTINGS_FILE"
#: DebagSettings fields an operator may set as ``FINISHER_DEBAG_<FIELD>`` (``debag_<field>`` in the settings file)
_DEBAG_LIMITS = ("max_member_bytes", "max_total_bytes", "max_member_ratio", "max_zip_ratio", "zip_ratio_floor_bytes",
                 "max_entries", "max_path_bytes")


class FinisherOverrides(BaseSettings):
    """What an operator may set per host; None = the environment file's value."""

    model_config = SettingsConfigDict(env_prefix="FINISHER_", extra="ignore", frozen=True)

    archive_root: Path | None = None
    staging_dir: Path | None = None
    state_dir: Path | None = None
    ledger_url: str | None = None
    #: seconds a ledger write waits for a lock held by another process before LedgerUnavailable
    ledger_lock_timeout: float = Field(default=10.0, ge=0, le=600)
    #: an ``unexpected`` failure (an exception no stage names) is retried this many times in all, then sent to the
    #: DLQ by the finisher with its cause (never left to SQS's maxReceiveCount, which moves it without one)
    unexpected_attempts: int = Field(default=3, ge=1)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    visibility_timeout: int | None = Field(default=None, ge=1, le=43200)
    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    heartbeat_fraction: float = Field(default=1 / 3, gt=0, lt=1)
    grace_period: float = Field(default=30.0, ge=0)
    max_hops: int = Field(default=20, ge=1)
    #: a work is handed on as a continuation this long before SQS's 12 h visibility cap
    handoff_margin: int = Field(default=1800, ge=0)
    max_visibility: int = Field(default=43200, ge=1, le=43200)
    backoff_base: int = Field(default=30, ge=0)
    backoff_max: int = Field(default=3600, ge=0, le=43200)
    #: how long a message whose work is leased by another finisher stays hidden
    lease_busy_delay: int = Field(default=60, ge=0)
    #: messages received ahead of a free slot and held invisible, so the backlog goes earliest restore expiry first
    backlog_lookahead: int = Field(default=8, ge=0, le=50)
    #: ``run --drain`` gives up waiting for messages hidden by a backoff after this many idle seconds
    drain_idle_limit: float = Field(default=300, ge=0)
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: str = "INFO"
    metrics: bool = False
    endpoint_url: str | None = None
    restore_tier: Literal["Bulk", "Standard"] | None = None
    restore_days: int | None = Field(default=None, ge=1, le=30)
    restore_prices: dict[str, TierPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    #: restored copies expiring sooner than this are listed by ``status --expiring``
    expiring_within_hours: float = 48
    fetch_part_size: int = Field(default=64 * 2**20, ge=5 * 2**10)
    fetch_concurrency: int = Field(default=8, ge=1)
    #: read a zip's tail ahead of one streamed GET (overlapped mode); see FetchSettings.tail_ahead
    fetch_tail_ahead: bool = True
    #: de-bag a one-part download straight from its GET, the zip never written; see FetchSettings.stream
    fetch_stream: bool = True
    min_free_bytes: int = Field(default=2 * 2**30, ge=0)
    debag_workers: int | None = Field(default=None, ge=1)
    #: bomb and name limits of the de-bag (None = DebagSettings' default): FINISHER_DEBAG_MAX_ENTRIES …
    debag_max_member_bytes: int | None = Field(default=None, ge=0)
    debag_max_total_bytes: int | None = Field(default=None, ge=0)
    debag_max_member_ratio: float | None = Field(default=None, ge=1)
    debag_max_zip_ratio: float | None = Field(default=None, ge=1)
    debag_zip_ratio_floor_bytes: int | None = Field(default=None, ge=0)
    debag_max_entries: int | None = Field(default=None, ge=1)
    debag_max_path_bytes: int | None = Field(default=None, ge=1, le=4096)
    require_strong_checksums: bool = False
    #: de-bag while downloading (fetch_debag/) instead of one after the other
    fetch_debag_overlap: bool = True
    sync_script: Path | None = None
    sync_config_dir: Path | None = None
    post_sync_hook: list[str] | None = None
    sync_timeout: float | None = None
    #: ``module:function`` returning the stages instead of the real ones (``wiring.stages_for``: tests inject
    #: theirs into a finisher process this way); None: the real fetch, de-bag and sync, wired explicitly
    stages_factory: str | None = None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env vars beat the settings file, which arrives as init kwargs
        return env_settings, init_settings


@dataclass(frozen=True)
class Settings:
    """Everything resolved: the environment plus the effective finisher values."""

    environment: EnvironmentConfig
    overrides: FinisherOverrides
    archive_root: Path
    staging_dir: Path
    state_dir: Path
    ledger_url: str
    concurrency: int
    visibility_timeout: int
    restore_tier: str
    restore_days: int
    endpoint_url: str | None

    def __getattr__(self, name: str) -> Any:
        # the remaining knobs are read straight from the overrides (wait_time_seconds, grace_period …)
        return getattr(self.overrides, name)

    @property
    def downloads_dir(self) -> Path:
        return self.staging_dir / "downloads"

    @property
    def works_dir(self) -> Path:
        return self.staging_dir / "works"

    def fetch_settings(self) -> FetchSettings:
        o = self.overrides
        return FetchSettings(part_size=o.fetch_part_size, max_concurrency=o.fetch_concurrency,
                             min_free_bytes=o.min_free_bytes, tail_ahead=o.fetch_tail_ahead,
                             stream=o.fetch_stream)

    def debag_settings(self) -> DebagSettings:
        o = self.overrides
        extra: dict[str, Any] = {"workers": o.debag_workers} if o.debag_workers else {}
        extra.update({name: value for name in _DEBAG_LIMITS if (value := getattr(o, f"debag_{name}")) is not None})
        return DebagSettings(require_strong_checksums=o.require_strong_checksums, **extra)

    def sync_settings(self) -> SyncSettings:
        o = self.overrides
        extra: dict[str, Any] = {"script_path": o.sync_script} if o.sync_script else {}
        return SyncSettings(archive_root=self.archive_root, log_dir=self.state_dir / "logs",
                            web_parent=self.environment.finisher.web_destination, config_dir=o.sync_config_dir,
                            post_sync_hook=o.post_sync_hook, timeout_s=o.sync_timeout, **extra)

    def ensure_dirs(self) -> None:
        """Create the finisher's own folders. Never the archive root: a missing one is an unmounted archive, and
        creating it would fill the local disk (the sync stage names it: ``ArchiveUnavailable``)."""
        for path in (self.staging_dir, self.state_dir, self.downloads_dir, self.works_dir):
            path.mkdir(parents=True, exist_ok=True)


def _settings_file(path: Path | None) -> dict[str, Any]:
    path = path or (Path(os.environ[SETTINGS_FILE_VAR]) if os.environ.get(SETTINGS_FILE_VAR) else None)
    if path is None:
        return {}
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the finisher settings file must hold a mapping")
    return document


def load_settings(environment: EnvironmentConfig | None = None, *, env_name: str | None = None,
                  settings_file: Path | None = None, **overrides: Any) -> Settings:
    """Resolve the settings; ``overrides`` (CLI flags, tests) beat everything else."""
    environment = environment or load_environment(env_name)
    base = FinisherOverrides(**_settings_file(settings_file))
    finisher_overrides = base.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    o, f = finisher_overrides, environment.finisher
    state_dir = Path(o.state_dir or f.state_dir)
    return Settings(
        environment=environment, overrides=o,
        archive_root=Path(o.archive_root or f.archive_root), staging_dir=Path(o.staging_dir or f.staging_dir),
        state_dir=state_dir, ledger_url=o.ledger_url or f"sqlite:///{state_dir / 'ledger.sqlite'}",
        concurrency=o.concurrency or f.concurrency,
        visibility_timeout=o.visibility_timeout or environment.queues.visibility_timeout_s,
        restore_tier=o.restore_tier or environment.restore.tier,
        restore_days=o.restore_days or environment.restore.days,
        endpoint_url=o.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
    )
