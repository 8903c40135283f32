"""The finisher's settings are explicit: every documented ``FINISHER_*`` name lands in one owner's typed settings,
from the environment and from the settings file alike; defaults live in the owners only; no name is forwarded."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from onprem.finisher.debag.model import DebagSettings
from onprem.finisher.fetch.restore import TierPrice
from onprem.finisher.work.settings import ROUTES, FinisherOverrides, Settings, load_settings

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PRICES = {"Bulk": {"per_gb_usd": 0.001, "per_1000_requests_usd": 0.01, "eta_hours": 40},
          "Standard": {"per_gb_usd": 0.01, "per_1000_requests_usd": 0.1, "eta_hours": 10}}
#: each operator name: the text an operator writes (env var) and what the owner's field then holds (never its default)
VALUES: dict[str, tuple[str, Any]] = {
    "archive_root": ("/mnt/archive", Path("/mnt/archive")), "staging_dir": ("/srv/staging", Path("/srv/staging")),
    "archive_staging_dir": ("/mnt/archive/.staged", Path("/mnt/archive/.staged")),
    "state_dir": ("/srv/state", Path("/srv/state")), "ledger_url": ("sqlite:////srv/l.sqlite", "sqlite:////srv/l.sqlite"),
    "ledger_lock_timeout": ("12", 12.0), "endpoint_url": ("http://127.0.0.1:9", "http://127.0.0.1:9"),
    "log_format": ("json", "json"), "log_level": ("DEBUG", "DEBUG"), "metrics": ("false", False),
    "metrics_interval": ("15", 15.0), "metrics_buffer": ("500", 500),
    "concurrency": ("7", 7), "visibility_timeout": ("901", 901), "wait_time_seconds": ("3", 3),
    "heartbeat_fraction": ("0.25", 0.25), "grace_period": ("11", 11.0), "max_hops": ("4", 4),
    "handoff_margin": ("100", 100), "max_visibility": ("40000", 40000), "backoff_base": ("5", 5),
    "backoff_max": ("60", 60), "lease_busy_delay": ("2", 2), "backlog_lookahead": ("3", 3),
    "drain_idle_limit": ("9", 9.0), "unexpected_attempts": ("5", 5),
    "backlog_prior_rate": ("30", 30.0), "renew_interval": ("120", 120.0), "renew_margin_hours": ("6", 6.0),
    "restore_tier": ("Standard", "Standard"), "restore_days": ("3", 3), "restore_max_cost": ("7.5", 7.5),
    "restore_prices": (json.dumps(PRICES), {tier: TierPrice(**price) for tier, price in PRICES.items()}),
    "expiring_within_hours": ("12", 12.0),
    "restore_wait_interval": ("600", 600), "restore_max_wait_hours": ("20", 20.0),
    "expiry_metric_interval": ("30", 30.0),
    "fetch_part_size": ("1048576", 2**20), "fetch_concurrency": ("3", 3), "min_free_bytes": ("0", 0),
    "debag_workers": ("97", 97), "require_strong_checksums": ("true", True),
    "debag_max_member_bytes": ("1000", 1000), "debag_max_total_bytes": ("2000", 2000),
    "debag_max_member_ratio": ("50", 50.0), "debag_max_zip_ratio": ("20", 20.0),
    "debag_zip_ratio_floor_bytes": ("100", 100), "debag_max_entries": ("10", 10),
    "debag_max_path_bytes": ("1000", 1000),
    "sync_script": ("/opt/sync.sh", Path("/opt/sync.sh")), "sync_config_dir": ("/etc/sync", Path("/etc/sync")),
    "post_sync_hook": ('["echo", "{work_rid}"]', ["echo", "{work_rid}"]), "sync_timeout": ("60", 60.0),
    "sync_terminate_timeout": ("4", 4.0), "sync_lock_wait": ("120", 120.0),
}
#: values an environment variable carries as JSON; the settings file holds them as YAML structures
STRUCTURED = {"restore_prices", "post_sync_hook"}


def _documented_names() -> set[str]:
    """The ``FINISHER_…`` names of the settings table in docs/operations.md."""
    text = OPERATIONS.read_text(encoding="utf-8")
    table = text[text.index("| setting (`FINISHER_…`)"):].split("\n\n", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines()[2:]]
    return {name.lower() for row in rows for name in re.findall(r"`([A-Z_]+)`", row)}


def _held(settings: Settings, flat: str) -> Any:
    section, name = ROUTES[flat]
    return getattr(settings if section is None else getattr(settings, section), name)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("FINISHER_")] + ["AWS_ENDPOINT_URL"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_documented_names_are_exactly_the_names_the_settings_route() -> None:
    assert _documented_names() == set(ROUTES) == set(VALUES)


@pytest.mark.parametrize("flat", sorted(VALUES))
def test_every_documented_variable_takes_effect_in_its_owner(flat: str, clean_env: pytest.MonkeyPatch) -> None:
    raw, expected = VALUES[flat]
    assert _held(load_settings(env_name="dev"), flat) != expected, "the test value must not be the default"
    clean_env.setenv(f"FINISHER_{flat.upper()}", raw)
    assert _held(load_settings(env_name="dev"), flat) == expected


def test_every_documented_name_takes_effect_from_the_settings_file(tmp_path: Path,
                                                                   clean_env: pytest.MonkeyPatch) -> None:
    settings_file = tmp_path / "finisher.yml"
    settings_file.write_text(yaml.safe_dump({flat: json.loads(raw) if flat in STRUCTURED else raw
                                             for flat, (raw, _) in VALUES.items()}))
    settings = load_settings(env_name="dev", settings_file=settings_file)
    assert {flat: _held(settings, flat) for flat in VALUES} == {flat: value for flat, (_, value) in VALUES.items()}


def test_an_environment_variable_beats_the_settings_file_and_a_keyword_beats_both(
        tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    settings_file = tmp_path / "finisher.yml"
    settings_file.write_text("fetch_part_size: 2097152\ndebag_max_entries: 30\n")
    clean_env.setenv("FINISHER_FETCH_PART_SIZE", "3145728")
    settings = load_settings(env_name="dev", settings_file=settings_file, debag_max_entries=40)
    assert (settings.fetch.part_size, settings.debag.max_entries) == (3 * 2**20, 40)


def test_a_name_left_unset_takes_its_owners_default_which_is_defined_only_there(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_name="dev")
    assert settings.debag.max_member_bytes == DebagSettings().max_member_bytes
    # the operator's flat view repeats no default: unset is None, the owner decides
    assert all(field.default is None for field in FinisherOverrides.model_fields.values())


def test_a_refused_value_is_named_as_the_operator_set_it(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FINISHER_FETCH_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="FINISHER_FETCH_CONCURRENCY"):
        load_settings(env_name="dev")


def test_an_unknown_keyword_is_refused_not_ignored(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match="grace_periods"):
        load_settings(env_name="dev", grace_periods=3)


def test_the_settings_forward_no_name_to_another_object(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_name="dev")
    with pytest.raises(AttributeError):
        settings.grace_period  # noqa: B018 - the worker's knob lives in settings.worker only
    assert settings.worker.grace_period == 30.0
