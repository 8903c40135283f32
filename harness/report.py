"""What the demo prints about the archive: a tree cut at the image-group level, and sizes people can read."""

from __future__ import annotations

from pathlib import Path

from rich.tree import Tree

#: below a work's folder, each sub-folder is summarized (files, bytes) instead of listed
_SUMMARY_DEPTH = 4


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _folder_summary(folder: Path) -> str:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return f"{len(files)} files, {human_bytes(sum(p.stat().st_size for p in files))}"


def archive_tree(archive_root: Path, *, max_children: int = 8, label: str | None = None) -> Tree:
    """``Archive{n}/{NN}/{RID}/…``: folders down to each work's sub-folders, those summarized, at most
    ``max_children`` entries per folder."""
    tree = Tree(f"[bold]{label or archive_root}[/bold]")
    _add(tree, archive_root, depth=1, max_children=max_children)
    return tree


def _add(node: Tree, folder: Path, *, depth: int, max_children: int) -> None:
    # hidden entries are the sync script's locks and temp copies, not archive content
    children = sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                      key=lambda p: (not p.is_dir(), p.name))
    for child in children[:max_children]:
        if child.is_dir() and depth >= _SUMMARY_DEPTH:
            node.add(f"{child.name}/ [dim]({_folder_summary(child)})[/dim]")
        elif child.is_dir():
            _add(node.add(f"[bold]{child.name}/[/bold]"), child, depth=depth + 1, max_children=max_children)
        else:
            node.add(f"{child.name} [dim]({human_bytes(child.stat().st_size)})[/dim]")
    if len(children) > max_children:
        node.add(f"[dim]… {len(children) - max_children} more[/dim]")
