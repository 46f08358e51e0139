"""The tree `invoke render` prints: what was written, and the route command per node."""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from rich.markup import escape
from rich.tree import Tree

from airgap.render.write import RenderResult


def render_tree(result: RenderResult, image_count: int) -> Tree:
    """What was written, as a tree, with the runtime route command per node."""
    tree = Tree(f"[bold]{result.out}[/bold]  ({len(result.files)} files, {image_count} images)")
    branches: dict[str, Tree] = {}
    for rel in result.files:
        parts = PurePosixPath(rel).parts
        parent = tree
        for depth in range(1, len(parts)):
            key = "/".join(parts[:depth])
            if key not in branches:
                branches[key] = parent.add(escape(parts[depth - 1] + "/"))
            parent = branches[key]
        parent.add(escape(parts[-1]))
    for name, command in result.routes.items():
        branch = branches.get(f"nodes/{name}")
        label = "[dim]run if no default route: " + escape(shlex.join(command)) + "[/dim]"
        (branch or tree).add(label)
    return tree
