"""The finisher's typed settings: one pydantic model per owner, composed by ``Settings``, each default defined once.

Who owns what: ``WorkerSettings`` (here: the worker loop and the runner of one message), ``RestoreSettings`` (here:
restore requests and the estimate), ``FetchSettings`` (``fetch/request.py``), ``DebagSettings``
(``debag/model.py``), ``SyncSettings`` (``sync/stage.py``); ``Settings`` holds them with the paths, the ledger, the
logs and the environment file's model (``config.model.EnvironmentConfig``, shared with the CDK, kept as it is).

Precedence, lowest first: the owning model's default, or ``config/<env>.yaml`` (``BDRC_ENV`` / ``BDRC_ENV_FILE``)
for what the environment file says → the optional settings file (``FINISHER_SETTINGS_FILE``, YAML) →
``FINISHER_*`` environment variables → explicit overrides (CLI flags, keywords of ``load_settings``). The operator's
names are flat and documented (docs/operations.md): ``ROUTES`` says where each one lands.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.loader import load_environment
from config.model import EnvironmentConfig, RestoreTier
from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.debag.staging import STAGING_FOLDER, open_works_dir
from onprem.finisher.errors import ArchiveUnavailable
from onprem.finisher.fetch.request import FetchSettings
from onprem.finisher.fetch.restore import DEFAULT_PRICES, TierPrice
from onprem.finisher.sync.stage import SyncSettings

SETTINGS_FILE_VAR = "FINISHER_SETTINGS_FILE"
ENV_PREFIX = "FINISHER_"


class WorkerSettings(BaseModel):
    """The worker loop and the runner of one message: slots, visibility and heartbeat, hand-off, backoff."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: work slots, one message each (default: the environment file's ``finisher.concurrency``)
    concurrency: int = Field(ge=1, le=64)
    #: receive visibility; a lease lasts 0.9 of it (default: the environment file's ``queues.visibility_timeout_s``)
    visibility_timeout: int = Field(ge=1, le=43200)
    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    #: the heartbeat extends the visibility and renews the lease every ``visibility_timeout · heartbeat_fraction``
    #: seconds; below the lease's share of the visibility (``work.heartbeat.LEASE_SHARE``, 0.9) or it would lapse
    heartbeat_fraction: float = Field(default=1 / 3, gt=0, lt=0.9)
    #: seconds in-flight works get after SIGTERM before they are interrupted and released
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
    #: works per hour the whole fleet is assumed to sync until the ledger has measured it (the backlog's hides);
    #: fast on purpose: a message back too early costs one receive, one back too late leaves hosts idle
    backlog_prior_rate: float = Field(default=3600.0, gt=0)
    #: seconds between two passes over the queued backlog for copies to renew before they expire
    renew_interval: float = Field(default=300.0, ge=0)
    #: ``run --drain`` gives up waiting for messages hidden by a backoff after this many idle seconds
    drain_idle_limit: float = Field(default=300, ge=0)
    #: an ``unexpected`` failure (an exception no stage names) is retried this many times in all, then sent to the
    #: DLQ by the finisher with its cause (never left to SQS's maxReceiveCount, which moves it without one)
    unexpected_attempts: int = Field(default=3, ge=1)


def restore_tier(value: str) -> RestoreTier:
    """``value`` as S3 spells the tier (``bulk`` → ``Bulk``); a ValueError naming the accepted tiers otherwise."""
    accepted: tuple[RestoreTier, ...] = get_args(RestoreTier)
    for tier in accepted:
        if value.strip().lower() == tier.lower():
            return tier
    raise ValueError(f"{value!r} is not a Deep Archive restore tier: accepted {' | '.join(accepted)} (any case)")


class RestoreSettings(BaseModel):
    """Restore requests (``request-restore`` and the automatic re-request of an expired copy) and their estimate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("tier", mode="before")
    @classmethod
    def _tier_in_any_case(cls, value: Any) -> Any:
        return restore_tier(value) if isinstance(value, str) else value

    #: default: the environment file's ``restore:``
    tier: RestoreTier
    days: int = Field(ge=1, le=30)
    #: ``request-restore`` refuses a request whose total estimate is above this (USD) unless ``--max-cost`` allows
    max_cost_usd: float = Field(default=100.0, ge=0)
    prices: dict[str, TierPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    #: restored copies expiring sooner than this are listed by ``status --expiring``
    expiring_within_hours: float = 48
    #: a queued copy is renewed when the backlog ahead will not have reached it this long before it expires
    renew_margin_hours: float = Field(default=24.0, ge=0)
    #: seconds between two checks of a restore still in progress (or re-requested): the work waits as a new
    #: message (work/waiting.py), never spending the receive count that would move it to the DLQ
    wait_interval: int = Field(default=3600, ge=1, le=43200)
    #: a work whose restore is not ready this long after the finisher first found it waiting fails as
    #: ``restore_wait_exceeded``: a little over Bulk's worst case of 48 h
    max_wait_hours: float = Field(default=52, gt=0)
    #: the finisher publishes "hours until the earliest unsynced restore expires" at most this often (seconds)
    expiry_metric_interval: float = Field(default=300, ge=0)


class Settings(BaseModel):
    """Everything resolved: the environment, the finisher's own paths and logs, and each owner's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: EnvironmentConfig
    archive_root: Path
    #: the staging area: the fetch writes nothing there (the zip is never on disk); the start-up sweep removes what
    #: an older finisher left in it (``downloads/<slot>/<name>.part``)
    staging_dir: Path
    #: where the de-bag writes works (``<it>/works/<slot>/<RID>``; None: ``<archive_root>/.bdrc-staging``): on the
    #: archive's filesystem the sync hard-links and renames them into place, one write per byte wherever
    #: ``staging_dir`` is; a folder elsewhere makes the sync copy them
    archive_staging_dir: Path | None = None
    state_dir: Path
    #: ``sqlite:///…`` (default ``sqlite:///<state_dir>/ledger.sqlite``) or ``postgresql+psycopg://…`` for a ledger
    #: shared by several hosts (docs/deploy.md, "Several hosts"); any other database is refused at start
    ledger_url: str
    #: seconds a ledger call waits for a lock held by another process (PostgreSQL: also for a server that is away,
    #: reconnecting with backoff) before LedgerUnavailable
    ledger_lock_timeout: float = Field(default=10.0, ge=0, le=600)
    #: S3/SQS endpoint (default ``AWS_ENDPOINT_URL``), e.g. a local moto server
    endpoint_url: str | None = None
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: str = "INFO"
    #: CloudWatch metrics (default: on against AWS, i.e. without an endpoint; off with one, e.g. the demo's moto)
    metrics: bool = False
    #: seconds between two sends of the metrics thread (the heartbeat's and BytesDownloaded's period)
    metrics_interval: float = Field(default=60.0, gt=0, le=300)
    #: datums buffered between two sends at most; beyond, a datum is dropped and counted (MetricsDropped)
    metrics_buffer: int = Field(default=10_000, ge=1)
    worker: WorkerSettings
    restore: RestoreSettings
    fetch: FetchSettings = FetchSettings()
    debag: DebagSettings = Field(default_factory=DebagSettings)
    sync: SyncSettings

    @property
    def works_staging_dir(self) -> Path:
        """The folder holding ``works/``: ``archive_staging_dir``, by default hidden under the archive root."""
        return self.archive_staging_dir or self.archive_root / STAGING_FOLDER

    @property
    def works_dir(self) -> Path:
        return self.works_staging_dir / "works"

    def ensure_dirs(self) -> None:
        """Create the finisher's own folders. Never the archive root: a missing one is an unmounted archive, and
        creating it would fill the local disk (the works folder under it waits for it: ``ArchiveUnavailable``)."""
        for path in (self.staging_dir, self.state_dir):
            path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(ArchiveUnavailable):
            open_works_dir(self.works_dir, self.archive_root, "-")


#: the owner of each section of ``Settings`` (None: ``Settings`` itself)
SECTIONS: dict[str | None, type[BaseModel]] = {
    None: Settings, "worker": WorkerSettings, "restore": RestoreSettings, "fetch": FetchSettings,
    "debag": DebagSettings, "sync": SyncSettings,
}
#: every operator name (``FINISHER_<NAME>``, ``<name>`` in the settings file, a keyword of ``load_settings``) →
#: the section and field it sets; its type, bounds and default are the owning model's
ROUTES: dict[str, tuple[str | None, str]] = {
    **{name: (None, name) for name in ("archive_root", "staging_dir", "archive_staging_dir", "state_dir", "ledger_url",
                                       "ledger_lock_timeout", "endpoint_url", "log_format", "log_level", "metrics",
                                       "metrics_interval", "metrics_buffer")},
    **{name: ("worker", name) for name in WorkerSettings.model_fields},
    "restore_tier": ("restore", "tier"), "restore_days": ("restore", "days"), "restore_prices": ("restore", "prices"),
    "restore_max_cost": ("restore", "max_cost_usd"),
    "expiring_within_hours": ("restore", "expiring_within_hours"),
    "renew_margin_hours": ("restore", "renew_margin_hours"),
    "restore_wait_interval": ("restore", "wait_interval"), "restore_max_wait_hours": ("restore", "max_wait_hours"),
    "expiry_metric_interval": ("restore", "expiry_metric_interval"),
    "fetch_part_size": ("fetch", "part_size"), "fetch_concurrency": ("fetch", "max_concurrency"),
    "min_free_bytes": ("fetch", "min_free_bytes"),
    "debag_workers": ("debag", "workers"), "require_strong_checksums": ("debag", "require_strong_checksums"),
    **{f"debag_{name}": ("debag", name) for name in ("max_member_bytes", "max_total_bytes", "max_member_ratio",
                                                     "max_zip_ratio", "zip_ratio_floor_bytes", "max_entries",
                                                     "max_path_bytes")},
    "sync_script": ("sync", "script_path"), "sync_config_dir": ("sync", "config_dir"),
    "post_sync_hook": ("sync", "post_sync_hook"), "sync_timeout": ("sync", "timeout_s"),
    "sync_terminate_timeout": ("sync", "terminate_timeout_s"), "sync_lock_wait": ("sync", "lock_wait_s"),
}


class _OverridesSource(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env vars beat the settings file, which arrives as init kwargs
        return env_settings, init_settings


def _optional(section: str | None, name: str) -> Any:
    return (SECTIONS[section].model_fields[name].annotation | None, None)


#: what an operator set, by flat name; None = not set (the owner's default, or the environment file's value).
#: Generated from ROUTES, so a name's type is the owning field's and no default is repeated here
FinisherOverrides: type[BaseSettings] = create_model(
    "FinisherOverrides", __base__=_OverridesSource,
    **{flat: _optional(section, name) for flat, (section, name) in ROUTES.items()})


def _settings_file(path: Path | None) -> dict[str, Any]:
    path = path or (Path(os.environ[SETTINGS_FILE_VAR]) if os.environ.get(SETTINGS_FILE_VAR) else None)
    if path is None:
        return {}
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the finisher settings file must hold a mapping")
    return document


def _sections(chosen: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    sections: dict[str | None, dict[str, Any]] = {section: {} for section in SECTIONS}
    for flat, value in chosen.items():
        section, name = ROUTES[flat]
        sections[section][name] = value
    return sections


def _build(model: type[BaseModel], values: dict[str, Any], section: str | None) -> Any:
    """``model(**values)``; a refused value is named as the operator set it (``FINISHER_FETCH_PART_SIZE``)."""
    try:
        return model(**values)
    except ValidationError as err:
        flat = {(s, n): f for f, (s, n) in ROUTES.items()}
        names = [f"{ENV_PREFIX}{flat.get((section, str(e['loc'][0])), str(e['loc'][0])).upper()}: {e['msg']}"
                 for e in err.errors()]
        raise ValueError(f"invalid finisher settings: {'; '.join(names)}") from err


def load_settings(environment: EnvironmentConfig | None = None, *, env_name: str | None = None,
                  settings_file: Path | None = None, **overrides: Any) -> Settings:
    """Resolve the settings; ``overrides`` (CLI flags, tests; the flat names of ``ROUTES``) beat everything else.
    None means "not given"; an unknown name is a TypeError."""
    unknown = sorted(set(overrides) - set(ROUTES))
    if unknown:
        raise TypeError(f"load_settings: unknown setting(s) {', '.join(unknown)}")
    environment = environment or load_environment(env_name)
    chosen = FinisherOverrides(**_settings_file(settings_file)).model_dump(exclude_none=True)
    chosen.update({name: value for name, value in overrides.items() if value is not None})
    top, f = _sections(chosen), environment.finisher
    base = top[None]
    state_dir = Path(base.pop("state_dir", f.state_dir))
    archive_root = Path(base.pop("archive_root", f.archive_root))
    worker = {"concurrency": f.concurrency, "visibility_timeout": environment.queues.visibility_timeout_s,
              **top["worker"]}
    restore = {"tier": environment.restore.tier, "days": environment.restore.days, **top["restore"]}
    sync = {"archive_root": archive_root, "log_dir": state_dir / "logs", "web_parent": f.web_destination,
            **top["sync"]}
    endpoint_url = base.pop("endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL") or None
    return _build(Settings, {
        "environment": environment, "archive_root": archive_root, "state_dir": state_dir,
        "staging_dir": Path(base.pop("staging_dir", f.staging_dir)),
        "ledger_url": base.pop("ledger_url", f"sqlite:///{state_dir / 'ledger.sqlite'}"),
        "endpoint_url": endpoint_url, "metrics": base.pop("metrics", endpoint_url is None), **base,
        "worker": _build(WorkerSettings, worker, "worker"), "restore": _build(RestoreSettings, restore, "restore"),
        "fetch": _build(FetchSettings, top["fetch"], "fetch"), "debag": _build(DebagSettings, top["debag"], "debag"),
        "sync": _build(SyncSettings, sync, "sync"),
    }, None)
