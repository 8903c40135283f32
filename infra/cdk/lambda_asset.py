"""Prepare the notify_restore deployment asset without Docker: ``python -m infra.cdk.lambda_asset OUT_DIR``.

The asset holds the handler package and the leaves it imports (``contract``, ``config.routing``);
Powertools and pydantic come from the managed Powertools layer.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else REPO_ROOT / "build" / "lambda" / "notify_restore"
    print(build_asset(out_dir))


if __name__ == "__main__":
    main()
