"""pyproject.toml pins every dependency exactly, and the lock files (``make lock``) agree with those pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_PIN_RE = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?==([^\s;]+)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += [r for r in extra if not r.startswith("bdrc-restore")]
    pins = {}
    for requirement in requirements:
        match = _PIN_RE.match(requirement)
        assert match, f"{requirement!r} in pyproject.toml is not pinned exactly (name==version)"
        pins[_canonical(match.group(1))] = match.group(2)
    return pins


def _lock(name: str) -> dict[str, str]:
    lines = (ROOT / "requirements" / name).read_text(encoding="utf-8").splitlines()
    return {_canonical(m.group(1)): m.group(2) for line in lines if (m := _PIN_RE.match(line))}


def test_every_direct_dependency_is_locked_at_its_pinned_version() -> None:
    dev = _lock("dev.lock")
    mismatched = {name: (pin, dev.get(name)) for name, pin in _project_pins().items() if dev.get(name) != pin}
    assert mismatched == {}, "pyproject.toml pin → dev.lock version; run `make lock`"


def test_the_finisher_lock_is_the_dev_lock_narrowed_to_the_finisher() -> None:
    dev, finisher = _lock("dev.lock"), _lock("finisher.lock")
    assert finisher, "requirements/finisher.lock is empty"
    assert {name: version for name, version in finisher.items() if dev.get(name) != version} == {}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {_canonical(_PIN_RE.match(r).group(1)) for r in project["dependencies"]}  # type: ignore[union-attr]
    assert runtime <= set(finisher)
    assert not {"moto", "pytest", "aws-cdk-lib", "aws-lambda-powertools"} & set(finisher)


def test_the_makefile_installs_the_venv_from_the_lock_file() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "install -q -r requirements/dev.lock" in makefile
    assert "install -q --no-deps -e ." in makefile
