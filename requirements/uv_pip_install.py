"""``uv pip install`` with this host's pip settings: uv does not read pip's configuration, so the venv would
otherwise be resolved against PyPI alone, not the host's find-links, extra indexes, constraints and CA bundle.

    python3 requirements/uv_pip_install.py UV PYTHON [uv pip install arguments...]

reads pip's effective install settings (``python -m pip config list``: its files and ``PIP_*`` variables, with pip's
precedence ``global`` < ``install`` < environment), turns each into the matching uv flag, and runs
``UV pip install --python PYTHON <flags> <arguments>``, exiting with its status. A setting the caller already gave uv
through its own ``UV_*`` variable is left to that variable. Standard library only: it runs before the venv has
anything installed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

#: pip's sections in the order pip applies them to ``pip install`` (a later one wins)
_SECTIONS = ("global", "install", ":env:")

#: pip key -> (uv flag, the UV_* variable that overrides it); a multi-valued pip key gives one flag per value
_FLAGS = {
    "index-url": ("--default-index", "UV_DEFAULT_INDEX"),
    "extra-index-url": ("--index", "UV_INDEX"),
    "find-links": ("--find-links", "UV_FIND_LINKS"),
    "constraint": ("--constraint", "UV_CONSTRAINT"),
    "trusted-host": ("--allow-insecure-host", "UV_INSECURE_HOST"),
}

#: pip key -> the environment variable uv reads for it
_ENVIRONMENT = {
    "cert": "SSL_CERT_FILE",
    "client-cert": "SSL_CLIENT_CERT",
    "timeout": "UV_HTTP_TIMEOUT",
    "default-timeout": "UV_HTTP_TIMEOUT",
    "proxy": "HTTPS_PROXY",
}


def pip_settings(python: str) -> dict[str, str]:
    """pip's effective settings for ``pip install``, keyed by option name (``find-links``), values as pip holds them."""
    listing = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    return effective_settings(listing)


def effective_settings(listing: str) -> dict[str, str]:
    """The settings ``pip install`` applies, from ``pip config list``'s lines (``section.key='value'``)."""
    by_section: dict[str, dict[str, str]] = {section: {} for section in _SECTIONS}
    for line in listing.splitlines():
        name, sep, quoted = line.partition("=")
        section, dot, key = name.rpartition(".")
        if not sep or not dot or section not in by_section:
            continue
        # pip prints each value as a Python string literal
        by_section[section][key] = ast.literal_eval(quoted)
    effective: dict[str, str] = {}
    for section in _SECTIONS:
        effective.update(by_section[section])
    return effective


def uv_flags_and_environment(settings: dict[str, str], environ: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The uv flags and environment additions that carry ``settings`` over; what ``environ`` already sets is kept."""
    flags: list[str] = []
    additions: dict[str, str] = {}
    for key, (flag, override) in _FLAGS.items():
        if key in settings and override not in environ:
            for value in settings[key].split():
                flags += [flag, value]
    for key, variable in _ENVIRONMENT.items():
        if key in settings and variable not in environ:
            additions[variable] = settings[key]
    if settings.get("no-index", "").lower() in {"1", "true", "yes", "on"}:
        flags.append("--no-index")
    # pip takes the best version over every index and find-links location; uv's default stops at the first index
    # that knows the name (here: a local mirror holding an older release than the lock's pin)
    if "UV_INDEX_STRATEGY" not in environ:
        flags += ["--index-strategy", "unsafe-best-match"]
    return flags, additions


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    uv, python, arguments = argv[1], argv[2], argv[3:]
    flags, additions = uv_flags_and_environment(pip_settings(python), dict(os.environ))
    command = [uv, "pip", "install", "--python", python, *flags, *arguments]
    raise SystemExit(subprocess.run(command, env={**os.environ, **additions}, check=False).returncode)


if __name__ == "__main__":
    main(sys.argv)
