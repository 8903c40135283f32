"""The finisher's import graph, read from its source with ``ast``: which module imports which, and the rooms.

``python -m tests.architecture.import_graph`` prints the rooms, the longest import chain and every cross-room
arrow; ``tests/architecture/test_layers.py`` holds the rules (no cycle, no upward import, the harness out).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = "onprem.finisher"
#: the shared base: modules beside the stage packages, importing nothing of the finisher but each other
BASE = frozenset({"errors", "progress", "metrics", "metrics_batch", "logs", "durability"})
#: the stages, each importing only the base (and contract, config)
STAGES = frozenset({"queue", "fetch", "debag", "sync", "ledger"})
#: the one package that knows two stages: the download de-bagged while it arrives
OVERLAP = "fetch_debag"
#: room → the rooms it may import (besides itself); the direction is cli → work → stages → base
ALLOWED: dict[str, frozenset[str]] = {
    "base": frozenset(),
    **{stage: frozenset({"base"}) for stage in STAGES},
    OVERLAP: frozenset({"base", "fetch", "debag"}),
    "work": frozenset({"base", *STAGES, OVERLAP}),
    "cli": frozenset({"base", *STAGES, OVERLAP, "work"}),
}
#: top-level names the product must never import (the development harness, the AWS side, the test tools)
FORBIDDEN = frozenset({"harness", "moto", "lambdas", "infra", "tests", "bench", "pytest"})


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. onprem.finisher.debag.layout
    path: Path
    imports: frozenset[str]  # every dotted name it imports (top-level names of third parties included)
    #: a package's face: an ``__init__.py`` that defines nothing (a docstring, imports handed on, ``__all__``)
    face: bool

    @property
    def room(self) -> str:
        parts = self.name.split(".")[2:]
        if not parts:
            return "base"  # onprem/finisher/__init__.py
        if len(parts) == 1:
            return "base" if parts[0] in BASE else parts[0]
        return parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import module``


@functools.cache
def product_modules() -> dict[str, Module]:
    """Every module under ``onprem/finisher`` with the finisher modules it imports (resolved to files)."""
    paths = sorted((ROOT / "onprem" / "finisher").rglob("*.py"))
    names = {_module_name(p): p for p in paths}
    modules = {}
    for name, path in names.items():
        imported = set(_imports(path, name))
        inside = {dotted for dotted in imported if dotted in names and dotted != name}
        others = {dotted.split(".")[0] for dotted in imported if not dotted.startswith(PRODUCT)}
        modules[name] = Module(name, path, frozenset(inside | others), _is_face(path))
    return modules


def _is_face(path: Path) -> bool:
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr))
               or (isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["__all__"])
               for node in body)


def edges() -> dict[str, set[str]]:
    """Finisher module → the finisher modules it imports; a package's face counts as the modules it hands on."""
    modules = product_modules()

    def resolved(dep: str) -> set[str]:
        module = modules[dep]
        if not module.face:
            return {dep}
        return {inner for name in module.imports if name in modules and name != dep for inner in resolved(name)}

    return {name: {target for dep in module.imports if dep in modules for target in resolved(dep)} - {name}
            for name, module in modules.items() if not module.face}


def cycles() -> list[list[str]]:
    """Each import cycle once (Tarjan's strongly connected components of more than one module, or a self-loop)."""
    graph, index, low, stack, on_stack, found = edges(), {}, {}, [], set(), []
    counter = iter(range(10**9))

    def visit(node: str) -> None:
        index[node] = low[node] = next(counter)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def longest_chain() -> list[str]:
    """The longest path of imports inside the finisher (modules, each importing the next)."""
    graph, visiting = edges(), set()

    @functools.cache
    def from_node(node: str) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        visiting.add(node)
        for dep in sorted(graph[node] - visiting):  # a cycle (reported by ``cycles``) is not followed round
            candidate = from_node(dep)
            if len(candidate) > len(best):
                best = candidate
        visiting.discard(node)
        return (node, *best)

    return list(max((from_node(n) for n in sorted(graph)), key=len, default=()))


def longest_chains(count: int = 5) -> list[list[str]]:
    """The ``count`` longest import chains starting from different modules (the margin under the limit)."""
    graph = edges()

    @functools.cache
    def depth(node: str, seen: frozenset[str] = frozenset()) -> tuple[str, ...]:
        options = [depth(dep, seen | {node}) for dep in sorted(graph[node] - seen - {node})]
        return (node, *max(options, key=len, default=()))

    chains = sorted((list(depth(node)) for node in graph), key=len, reverse=True)
    return chains[:count]


def upward_imports() -> list[str]:
    """``a -> b`` for every import that crosses rooms against ``ALLOWED``."""
    modules = product_modules()
    wrong = []
    graph = edges()
    for name, module in sorted(modules.items()):
        for dep in sorted(graph.get(name, set())):
            src, dst = module.room, modules[dep].room
            if src != dst and dst not in ALLOWED.get(src, frozenset()):
                wrong.append(f"{name} ({src}) -> {dep} ({dst})")
    return wrong


def forbidden_imports() -> list[str]:
    return [f"{name} -> {dep}" for name, module in sorted(product_modules().items())
            for dep in sorted(module.imports) if dep.split(".")[0] in FORBIDDEN]


def main() -> None:
    modules = product_modules()
    rooms: dict[str, list[str]] = {}
    for name, module in modules.items():
        rooms.setdefault(module.room, []).append(name.rsplit(".", 1)[-1])
    for room, members in sorted(rooms.items()):
        print(f"{room:12} {len(members):3}  {' '.join(sorted(members))}")
    chain = longest_chain()
    print(f"\nlongest import chain: {len(chain)} modules\n  " + "\n  → ".join(chain))
    print("\nthe longest chains from other modules:")
    for other in longest_chains(6)[1:]:
        print(f"  {len(other)}: " + " → ".join(name.removeprefix(PRODUCT + ".") for name in other))
    for title, rows in (("cycles", [" ↔ ".join(c) for c in cycles()]), ("upward imports", upward_imports()),
                        ("forbidden imports", forbidden_imports())):
        print(f"\n{title}: {len(rows)}")
        for row in rows:
            print(f"  {row}")


if __name__ == "__main__":
    main()
