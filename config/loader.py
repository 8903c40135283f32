"""Load an environment's YAML file into the typed model, with errors that name the file and the key."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from config.model import EnvironmentConfig

CONFIG_DIR = Path(__file__).resolve().parent
ENV_VAR = "BDRC_ENV"
FILE_VAR = "BDRC_ENV_FILE"


class EnvironmentConfigError(ValueError):
    """A missing or invalid environment file."""


def available_environments() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def environment_file(name: str) -> Path:
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise EnvironmentConfigError(
            f"no environment {name!r}: {path} does not exist (known: {', '.join(available_environments())})"
        )
    return path


def load_environment(name: str | None = None, *, path: Path | None = None) -> EnvironmentConfig:
    """Load ``path``, else ``$BDRC_ENV_FILE``, else ``config/<name or $BDRC_ENV or dev>.yaml``."""
    if path is None and os.environ.get(FILE_VAR):
        path = Path(os.environ[FILE_VAR])
    if path is None:
        path = environment_file(name or os.environ.get(ENV_VAR) or "dev")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise EnvironmentConfigError(f"{path}: cannot read environment file: {err}") from err
    try:
        return EnvironmentConfig.model_validate(document)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise EnvironmentConfigError(f"{path}: invalid environment: {problems}") from err
