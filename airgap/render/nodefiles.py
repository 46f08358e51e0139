"""Every file a plan implies, for one node and for the connected side.

One entry point for ``invoke render`` (which writes them for a human to read) and for
deploy (which puts them on nodes), so what a user previews is exactly what is
installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from airgap.config import Mode, Node, Plan
from airgap.images import ImageRef, format_image_list, merge_images, registries
from airgap.render import RenderedFile
from airgap.render.hosts import render_hosts_files
from airgap.render.proxy import render_proxy_dropin
from airgap.render.route import render_route

CONNECTED_IMAGE_LIST = "images.txt"


def render_node_files(
    plan: Plan, node: Node, images: Sequence[ImageRef], ca_pem: bytes | None
) -> list[RenderedFile]:
    """Absolute paths on ``node``, sorted by path."""
    files: list[RenderedFile] = []
    if plan.has(Mode.mirror):
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
        try:
            from airgap.render.sync import render_sync_images
        except ModuleNotFoundError as exc:
            if exc.name != "airgap.render.sync":
                raise
        else:
            files.append(render_sync_images(plan, list(images), ca_pem=ca_pem))
    _no_duplicates(files)
    return sorted(files, key=lambda f: f.path)


def _no_duplicates(files: Sequence[RenderedFile]) -> None:
    paths = [f.path for f in files]
    dup = sorted({p for p in paths if paths.count(p) > 1})
    if dup:
        raise ValueError(f"two renderers produced {dup[0]}")
