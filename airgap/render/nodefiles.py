"""Every file a plan implies, for one node and for the connected side.

One entry point for ``invoke render`` (which writes them for a human to read) and for
deploy (which puts them on nodes), so what a user previews is exactly what is
installed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.markup import escape
from rich.tree import Tree

from airgap.config import Mode, Node, Plan, check_mirror_paths, workload_images
from airgap.defaults import default_images
from airgap.errors import AirgapError
from airgap.images import ImageRef, format_image_list, merge_images, read_image_list, registries
from airgap.lock import ImageLock, read_lock
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


# --- Writing a preview tree (invoke render) ------------------------------------------

MARKER = ".airgap-render"


@dataclass(frozen=True)
class RenderResult:
    out: Path
    files: list[str]  # paths relative to out, sorted
    routes: dict[str, list[str]]  # node name -> runtime route command


def plan_images(
    plan: Plan, *, images_file: Path | None = None, bundle: Path | None = None
) -> list[ImageRef]:
    """The images a plan implies: the k8s list plus the plan's workload images.

    The k8s list is, in order of preference: an explicit ``k8s list-images`` output or
    images.txt, the bundle's images.lock (what ``invoke prepare`` pinned), or the list
    shipped with k8s-airgap (the images the upstream procedure names).
    """
    if images_file is not None and bundle is not None:
        raise AirgapError(
            "Give --images or --bundle, not both",
            resolution="--images FILE for a list-images output, "
            "--bundle DIR for a prepared bundle.",
        )
    if images_file is not None:
        base = read_image_list(images_file)
    elif bundle is not None and (bundle / "images.lock").is_file():
        base = read_lock(bundle / "images.lock").refs()
    elif bundle is not None and not bundle.is_dir():
        raise AirgapError(
            f"{bundle}: bundle directory not found",
            resolution="Pass the directory `invoke prepare --bundle DIR` wrote.",
        )
    else:
        base = default_images(plan.k8s.channel)
    return merge_images(base, workload_images(plan))


def plan_images_locked(
    plan: Plan,
    *,
    images_file: Path | None = None,
    bundle: Path | None = None,
    lock: Path | None = None,
) -> tuple[list[ImageRef], ImageLock | None]:
    """The images to copy and the lock that pins them, for mirror and sideload.

    The lock is ``lock`` (which must exist) or the bundle's images.lock when there is
    one. Unless ``images_file`` replaces the k8s list, every locked image is included
    even if the plan no longer names it, so what prepare pinned is what crosses.
    """
    lock_path = lock if lock is not None else (bundle / "images.lock" if bundle else None)
    if lock is not None and not lock.is_file():
        raise AirgapError(f"{lock}: images.lock not found",
                          resolution="Pass the images.lock `invoke prepare` wrote (--lock), "
                          "or the bundle directory (--bundle).")
    locked = read_lock(lock_path) if lock_path is not None and lock_path.is_file() else None
    refs = plan_images(plan, images_file=images_file,
                       bundle=bundle if lock is None else None)
    if locked is not None and images_file is None:
        refs = merge_images(locked.refs(), refs)
    return refs, locked


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


def write_render(
    plan: Plan, images: Sequence[ImageRef], ca_pem: bytes | None, out: Path
) -> RenderResult:
    """Render everything, then replace ``out`` in one rename; on error nothing changes.

    ``out`` may be missing, empty, or a previous render (it holds a marker file); any
    other existing directory is refused, so a typo such as ``--out /etc`` cannot
    destroy anything.
    """
    tree = render_all(plan, images, ca_pem)  # every error surfaces before any write
    routes = {n.name: render_route(plan, n).command for n in plan.nodes}
    out = Path(os.path.abspath(out))
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise AirgapError(
                f"{out}: exists and is not a directory",
                resolution="Choose another --out, or remove it.",
            )
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise AirgapError(
                f"{out}: directory is not empty and was not written by `invoke render`",
                resolution="Choose a new or empty --out directory; a previous render is replaced.",
            )
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as exc:
        raise AirgapError(f"{out}: cannot create the output directory ({exc.strerror})") from None
    try:
        for rel, f in tree.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.content)
            target.chmod(f.mode)
        (tmp / MARKER).write_text(f"Rendered by k8s-airgap from {plan.source}\n")
        tmp.chmod(0o755)
        if out.exists():
            holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.rename(out, holder / "previous")
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(holder / "previous", out)
                raise
            finally:
                shutil.rmtree(holder, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AirgapError(
            f"{out}: cannot write the rendered files ({exc.strerror or exc})"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RenderResult(out=out, files=sorted(tree), routes=routes)


def _inside(prefix: str, path: str) -> str:
    rel = PurePosixPath(prefix) / path.lstrip("/")
    if ".." in rel.parts:
        raise ValueError(f"refusing to write outside the output directory: {path}")
    return str(rel)


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
