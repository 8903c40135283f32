"""The venv's uv install carries pip's settings over (requirements/uv_pip_install.py, run by ``make``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "requirements" / "uv_pip_install.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("uv_pip_install", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: ``pip config list`` of a host like this one: a file's global and install sections, and PIP_* variables
LISTING = """global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
global.index-url='https://mirror.example/simple'
install.index-url='https://install-section.example/simple'
:env:.default-timeout='180'
:env:.find-links='/srv/wheels /srv/more wheels'
"""


def test_pip_s_precedence_holds_and_every_setting_becomes_its_uv_flag_or_variable() -> None:
    script = _script()
    settings = script.effective_settings(LISTING)
    # pip applies global, then the command's section, then its environment variables
    assert settings["index-url"] == "https://install-section.example/simple"
    assert settings["find-links"] == "/srv/wheels /srv/more wheels"
    flags, environment = script.uv_flags_and_environment(settings, {})
    pairs = list(zip(flags[::2], flags[1::2], strict=True))
    assert ("--default-index", "https://install-section.example/simple") in pairs
    assert [value for flag, value in pairs if flag == "--index"] == [
        "file:///opt/pypi/simple", "file:///opt/pypi-more/simple"]
    assert [value for flag, value in pairs if flag == "--find-links"] == ["/srv/wheels", "/srv/more", "wheels"]
    assert ("--constraint", "/etc/xdg/pip/constraints.txt") in pairs
    # pip's best match across every index, not uv's first index that knows the name
    assert ("--index-strategy", "unsafe-best-match") in pairs
    assert environment == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "UV_HTTP_TIMEOUT": "180"}


def test_what_the_caller_gave_uv_itself_wins_over_pip_s_settings() -> None:
    script = _script()
    settings = script.effective_settings(LISTING)
    caller = {"UV_INDEX": "https://own.example/simple", "UV_INDEX_STRATEGY": "first-index",
              "SSL_CERT_FILE": "/own/ca.pem"}
    flags, environment = script.uv_flags_and_environment(settings, caller)
    assert "--index" not in flags and "--index-strategy" not in flags and "--find-links" in flags
    assert "SSL_CERT_FILE" not in environment


def test_the_script_passes_uv_s_exit_status_and_the_flags_on() -> None:
    """Run as make runs it, with stand-ins for uv: echo (prints what it was given) and false (fails)."""
    result = subprocess.run([sys.executable, str(SCRIPT), "/bin/echo", sys.executable, "-q", "-r", "x.lock"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[:4] == ["pip", "install", "--python", sys.executable] and words[-3:] == ["-q", "-r", "x.lock"]
    failed = subprocess.run([sys.executable, str(SCRIPT), "/bin/false", sys.executable], check=False)
    assert failed.returncode == 1
