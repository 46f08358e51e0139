"""Every file a plan implies, for one node and for the connected side: pure.

One entry point for ``invoke render`` (which writes them for a human to read, through
airgap.render.write) and for deploy (which puts them on nodes), so what a user previews
is exactly what is installed. Plan and image list in, file contents out; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from airgap.plan import Mode, Node, Plan, check_mirror_paths
from airgap.plan.images import ImageRef, format_image_list, merge_images, registries
from airgap.render import RenderedFile
from airgap.render.hosts import render_hosts_files
from airgap.render.proxy import render_proxy_dropin
from airgap.render.route import render_route
from airgap.render.sync import render_sync_images

CONNECTED_IMAGE_LIST = "images.txt"


def render_node_files(
    plan: Plan, node: Node, images: Sequence[ImageRef], ca_pem: bytes | None
) -> list[RenderedFile]:
    """Absolute paths on ``node``, sorted by path."""
    files: list[RenderedFile] = []
    if plan.has(Mode.mirror):
        check_mirror_paths(plan, list(images))
        files += render_hosts_files(plan, registries(images), ca_pem)
    if plan.has(Mode.proxy):
        files.append(render_proxy_dropin(plan))
    files += render_route(plan, node).files
    _no_duplicates(files)
    return sorted(files, key=lambda f: f.path)


def render_connected_files(
    plan: Plan, images: Sequence[ImageRef], ca_pem: bytes | None = None
) -> list[RenderedFile]:
    """Paths relative to the connected side's output directory, sorted by path.

    images.txt is the full list the plan implies (what prepare pins, mirror syncs and
    sideload exports); sync-images.yaml for regsync comes from airgap.render.sync.
    """
    listed = format_image_list(merge_images(images))
    files = [RenderedFile(CONNECTED_IMAGE_LIST, listed.encode(), 0o644)]
    if plan.has(Mode.mirror):
        files.append(render_sync_images(plan, list(images), ca_pem=ca_pem))
    _no_duplicates(files)
    return sorted(files, key=lambda f: f.path)


def _no_duplicates(files: Sequence[RenderedFile]) -> None:
    paths = [f.path for f in files]
    dup = sorted({p for p in paths if paths.count(p) > 1})
    if dup:
        raise ValueError(f"two renderers produced {dup[0]}")


def render_all(
    plan: Plan, images: Sequence[ImageRef], ca_pem: bytes | None
) -> dict[str, RenderedFile]:
    """Every file, keyed by its path below the output directory (nothing written)."""
    tree: dict[str, RenderedFile] = {}
    for node in plan.nodes:
        for f in render_node_files(plan, node, images, ca_pem):
            tree[_inside(f"nodes/{node.name}", f.path)] = f
    for f in render_connected_files(plan, images, ca_pem):
        tree[_inside("connected", f.path)] = f
    return tree


def _inside(prefix: str, path: str) -> str:
    rel = PurePosixPath(prefix) / path.lstrip("/")
    if ".." in rel.parts:
        raise ValueError(f"refusing to write outside the output directory: {path}")
    return str(rel)
