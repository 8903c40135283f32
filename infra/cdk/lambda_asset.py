"""Prepare the notify_restore deployment assets without Docker: ``python -m infra.cdk.lambda_asset OUT_DIR``.

The function asset holds the handler package and the leaves it imports (``contract``, ``config.routing``). Powertools
and pydantic come from our own layer (``build_layer``): the wheels of ``requirements/dev.lock``'s pins for the
function's runtime and architecture, so the deployed Powertools is by construction the one the tests run (the public
layer's number ↔ version mapping is not published in a form a test can read). boto3 and botocore are the runtime's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = REPO_ROOT / "requirements" / "dev.lock"
#: what the handler imports beyond the runtime: Powertools with its tracer and parser extras and their closure
#: (tests/infra/test_powertools_layer.py checks it is closed over the runtime's boto3/botocore)
LAYER_PACKAGES = ("aws-lambda-powertools", "aws-xray-sdk", "wrapt", "jmespath", "typing-extensions", "pydantic",
                  "pydantic-core", "annotated-types", "typing-inspection")
#: the function's runtime and architecture (infra/cdk/constructs/notify_function.py: python3.13, arm64)
LAYER_PYTHON, LAYER_PLATFORM = "3.13", "manylinux2014_aarch64"
LAYER_CACHE = REPO_ROOT / "build" / "lambda" / "powertools-layer"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
#: (source relative to the repo, files to take: None = every .py/.json file of the folder)
ASSET_CONTENT: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("lambdas", ("__init__.py",)),
    ("lambdas/notify_restore", None),
    ("contract", None),
    ("config", ("__init__.py", "routing.py")),
)


def build_asset(out_dir: Path) -> Path:
    """(Re)write ``out_dir`` with exactly the asset content; returns it."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    for folder, names in ASSET_CONTENT:
        source = REPO_ROOT / folder
        target = out_dir / folder
        target.mkdir(parents=True, exist_ok=True)
        files = [source / n for n in names] if names else sorted(
            p for p in source.iterdir() if p.suffix in {".py", ".json"}
        )
        for path in files:
            shutil.copy2(path, target / path.name)
    return out_dir


def locked_versions(lock_file: Path = LOCK_FILE) -> dict[str, str]:
    """Every ``name==version`` pin of a uv/pip-compile lock, by normalized name."""
    pins = {}
    for line in lock_file.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[normalized(match.group(1))] = match.group(2)
    return pins


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_pins(lock_file: Path = LOCK_FILE) -> list[str]:
    locked = locked_versions(lock_file)
    missing = [name for name in LAYER_PACKAGES if normalized(name) not in locked]
    if missing:
        raise LookupError(f"{lock_file} pins none of {', '.join(missing)}: run make lock")
    return [f"{name}=={locked[normalized(name)]}" for name in LAYER_PACKAGES]


def build_layer(cache: Path = LAYER_CACHE, lock_file: Path = LOCK_FILE) -> Path:
    """The layer folder (``python/`` inside) for the lock's pins, built once per set of pins and reused: the wheels
    for ``LAYER_PLATFORM`` / CPython ``LAYER_PYTHON``, installed without their dependencies (each is pinned)."""
    pins = layer_pins(lock_file)
    digest = hashlib.sha256("\n".join([LAYER_PYTHON, LAYER_PLATFORM, *pins]).encode()).hexdigest()[:16]
    layer = cache / digest
    if (layer / "pins.txt").is_file():
        return layer
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=cache))
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--no-compile", "--only-binary=:all:", "--implementation", "cp", "--python-version", LAYER_PYTHON,
             "--platform", LAYER_PLATFORM, "--target", str(staging / "python"), *pins],
            check=True, env={**os.environ, "PIP_NO_INPUT": "1"},
        )
        shutil.rmtree(staging / "python" / "bin", ignore_errors=True)  # console scripts: nothing for Lambda
        (staging / "pins.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")  # written last: complete
        try:
            staging.rename(layer)
        except OSError:  # another synth built the same pins meanwhile: theirs is as good
            if not (layer / "pins.txt").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return layer


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else REPO_ROOT / "build" / "lambda" / "notify_restore"
    print(build_asset(out_dir))


if __name__ == "__main__":
    main()
