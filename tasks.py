"""invoke tasks: thin wrappers that parse flags, call airgap/ and lab/, print results.

All logic lives in the library; a task loads the plan, calls one function and turns
an AirgapError into a clean message and a non-zero exit (never a traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from invoke import Collection, Exit, task
from rich.console import Console

from airgap.errors import AirgapError

console = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn AirgapError into `Error: ...` on stderr and exit 1."""
    try:
        yield
    except AirgapError as exc:
        raise Exit(f"Error: {exc}", code=1) from None


def _verbosity(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@task(help={"debug": "Log every command run (secrets are never logged)."})
def version(c, debug=False):
    """Print the k8s-airgap version and the tools it finds."""
    _verbosity(debug)
    from airgap import __version__

    print(f"k8s-airgap {__version__}")


@task(
    help={
        "plan": "The plan (airgap.yaml) to render.",
        "out": "Directory to write into; created, or replaced if a previous render.",
        "images": "k8s image list (`k8s list-images` output or the snap's images.txt).",
        "bundle": "A prepared bundle directory; its images.lock gives the image list.",
        "debug": "Log every command run (secrets are never logged).",
    }
)
def render(c, plan=None, out=None, images=None, bundle=None, debug=False):
    """Write every file the plan puts on each node (and the connected side) into a folder."""
    _verbosity(debug)
    from pathlib import Path

    from rich.console import Console as _Console

    from airgap.config import load_plan, mirror_ca_pem
    from airgap.render.nodefiles import plan_images, render_tree, write_render

    if not plan or not out:
        raise Exit("Error: --plan FILE and --out DIR are required (see `invoke render --help`)",
                   code=1)
    with user_errors():
        p = load_plan(plan)
        refs = plan_images(p, images_file=Path(images) if images else None,
                           bundle=Path(bundle) if bundle else None)
        result = write_render(p, refs, mirror_ca_pem(p), Path(out))
    _Console().print(render_tree(result, len(refs)))


@task(
    help={
        "out": "Where to write the starter plan (default airgap.yaml).",
        "mode": "Image access mode: mirror, proxy or sideload (default mirror).",
        "force": "Overwrite the file if it exists.",
    }
)
def init(c, out="airgap.yaml", mode="mirror", force=False):
    """Write a commented starter plan (airgap.yaml) to edit."""
    from pathlib import Path

    from airgap.config import Mode, starter_plan
    from airgap.fileio import write_atomic

    try:
        chosen = Mode(mode)
    except ValueError:
        raise Exit(f"Error: --mode {mode!r}: choose mirror, proxy or sideload", code=1) from None
    target = Path(out)
    if target.exists() and not force:
        raise Exit(f"Error: {target} already exists; pass --force to overwrite it", code=1)
    write_atomic(target, starter_plan(chosen, target.name))
    print(f"Wrote {target} ({chosen.value} mode). Edit it, then: "
          f"invoke render --plan {target} --out rendered")


ns = Collection(version)
ns.add_task(render)
ns.add_task(init)
