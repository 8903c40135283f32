"""bench/ and tests/ stand apart: neither imports the other, nothing edits sys.path, bench modules run with -m.

The bag builders both use live in harness/ (``harness.bags``, ``harness.zip_edits``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: the trees whose modules are checked (the product has its own rules in tests/architecture)
CHECKED = ("bench", "harness", "tests")


def _modules(tree: str) -> list[Path]:
    return sorted((REPO_ROOT / tree).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """The top-level packages ``path`` imports (absolute imports, anywhere in the module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _uses_sys_path(path: Path) -> bool:
    """Whether ``path`` touches ``sys.path`` at all (reading it is how an edit starts)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            return True
    return False


def test_bench_never_imports_the_tests() -> None:
    offenders = [p.relative_to(REPO_ROOT).as_posix() for p in _modules("bench") if "tests" in _imported(p)]
    assert offenders == []


def test_the_tests_never_import_the_bench() -> None:
    offenders = [p.relative_to(REPO_ROOT).as_posix() for p in _modules("tests") if "bench" in _imported(p)]
    assert offenders == []


def test_no_module_touches_sys_path() -> None:
    offenders = [p.relative_to(REPO_ROOT).as_posix() for tree in CHECKED for p in _modules(tree)
                 if _uses_sys_path(p)]
    assert offenders == []


def test_each_bench_script_answers_help_when_run_as_a_module_from_the_repo_root() -> None:
    for module in ("bench.run", "bench.debag_bench", "bench.baseline"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=120, check=False)
        assert (module, done.returncode) == (module, 0), done.stderr
        assert "usage:" in done.stdout
