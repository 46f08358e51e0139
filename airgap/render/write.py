"""Writing a render for a person to read: the one I/O step of ``invoke render``.

Everything is rendered first (airgap.render.nodefiles, pure); then the output
directory is replaced in one rename, so an error leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airgap.errors import AirgapError
from airgap.plan import Plan
from airgap.plan.images import ImageRef
from airgap.render.nodefiles import render_all
from airgap.render.route import render_route

MARKER = ".airgap-render"


@dataclass(frozen=True)
class RenderResult:
    out: Path
    files: list[str]  # paths relative to out, sorted
    routes: dict[str, list[str]]  # node name -> runtime route command


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
        raise AirgapError(f"{out}: cannot create the output directory ({exc.strerror})",
                          resolution="Choose an --out in a directory you can write to.") from None
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
            f"{out}: cannot write the rendered files ({exc.strerror or exc})",
            resolution="Check the free space and permissions there, or choose another --out; "
            "nothing was changed.",
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RenderResult(out=out, files=sorted(tree), routes=routes)
