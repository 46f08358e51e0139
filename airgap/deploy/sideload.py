"""Side-loaded images on a node: delivered with the runtime step, confirmed after
bootstrap or join on nodes whose containerd was not running when they arrived, and
pinned (airgap.sideload.pin) so that kubelet's image GC leaves them alone: the snap's
import sets no pin label, and offline a collected image never comes back."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from airgap import sideload
from airgap.deploy.context import DELIVERED, PENDING, PRESENT, Context
from airgap.deploy.report import StepStatus
from airgap.deploy.steps import NodeDeploy
from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.nodes import Node
from airgap.plan import SIDELOAD_DIR, Mode, Plan
from airgap.sideload.pin import PINNED, gc_warning, pin_images, runtime_version

SIDELOAD_STEP = "side-loaded images"
PIN_STEP = "pin side-loaded images"


@functools.lru_cache(maxsize=4)
def _archive_images(archives: tuple[Path, ...], platform: str) -> dict[str, str | None]:
    reports = sideload.validate_archives(list(archives), None, platform)
    return {img.name: img.digest for rep in reports for img in rep.images}


def default_deliver(plan: Plan, node: Node, archives: Sequence[Path]) -> str:
    """Side-load unless every archived image is already in the runtime with its digest."""
    want = _archive_images(tuple(archives), sideload.plan_platform(plan, None))
    ctr = sideload.ctr_command(node)
    res = node.run([*ctr, "-n", "k8s.io", "images", "ls"], check=False, timeout=60)
    found = sideload.parse_ctr_images(res.stdout) if res.ok else {}
    if want and all(n in found and d in (None, found[n]) for n, d in want.items()):
        pin_images(node, sorted(want))
        return PRESENT
    [result] = sideload.deliver(plan, [node], archives)
    if result.pending:
        return PENDING
    if not result.ok:
        bad = [f"{r.image}: {r.status}" for r in result.rows if not r.ok]
        raise AirgapError(
            f"{node.name}: side-loading failed: {result.error or ', '.join(bad[:3])}",
            resolution="Check the archives with `invoke verify --bundle DIR` (it validates them "
            "against the runtime's rules), then run deploy again.",
        )
    pin_images(node, sorted(want))
    return DELIVERED


def _pin(node: Node, images: Sequence[str]) -> tuple[StepStatus, str]:
    """Label every side-loaded image pinned, confirm the label with ctr, and say whether
    this containerd reports it to kubelet (by its version: deploy has no CRI client on
    the node; airgap.sideload.pin.cri_pins checks the CRI where one is at hand)."""
    rows = pin_images(node, images)
    now = [r.image for r in rows if r.status == "pinned"]
    pinned = [r.image for r in rows if r.ok]
    missing = [r.image for r in rows if not r.ok]
    detail = (f"{len(pinned)} image(s) labelled {PINNED} ({len(now)} now), shown by "
              "`ctr -n k8s.io images ls`")
    version = runtime_version(node)
    if warning := gc_warning(node.name, version):
        detail += f"; {warning}"
    else:
        detail += f"; containerd {version} reports the pin to kubelet's image GC"
    if missing:
        detail += (f"; WARNING: not in the runtime, so not pinned: {', '.join(missing[:3])}"
                   + (" ..." if len(missing) > 3 else ""))
    return (StepStatus.changed if now else StepStatus.done), detail


def _confirm(ctx: Context, node: Node) -> tuple[StepStatus, str]:
    """After bootstrap/join started containerd: did it import every side-loaded image?"""
    timeout = ctx.confirm_timeout
    want = _archive_images(tuple(ctx.bundle.archives), sideload.plan_platform(ctx.plan, None))
    rows = sideload.confirm_images(node, want, timeout=timeout, sleep=ctx.sleep, clock=ctx.clock)
    bad = [f"{r.image}: {r.status}" for r in rows if not r.ok]
    if bad:
        raise AirgapError(
            f"{node.name}: side-loaded images not in the runtime after {timeout:.0f} s: "
            + ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""),
            resolution=f"On {node.name}: `ls {SIDELOAD_DIR}` (imported archives are "
            "renamed *.tar.loaded) and `journalctl -u snap.k8s.containerd`; check the archives "
            "with `invoke verify --bundle DIR`, then run deploy again.",
        )
    _, pinned = _pin(node, sorted(want))
    return StepStatus.done, (f"{len(rows)} image(s) imported into k8s.io, digests checked; "
                             f"{pinned}")


def confirm_sideloaded(ctx: Context, runs: Mapping[str, NodeDeploy]) -> None:
    """Nodes whose archives were delivered before containerd ran (the real snap before
    bootstrap/join): bootstrap or join started it, so the images must be there now, and
    they are pinned then. Nodes whose containerd imported them during the runtime step
    get a step of their own that pins them (again: labelling is idempotent) and says
    whether the runtime reports the pin to kubelet."""
    todo, pin = [], []
    for run in runs.values():
        if not run.sideload_pending:
            # default_deliver pinned them; an injected deliver owns its images.
            if (ctx.deliver is default_deliver and ctx.plan.has(Mode.sideload)
                    and ctx.bundle.archives
                    and run.report.status_of("runtime") in (StepStatus.done, StepStatus.changed)):
                pin.append(run)
            continue
        step = "bootstrap" if run.spec.name == ctx.plan.control_plane.name else "join"
        if run.report.status_of(step) in (StepStatus.done, StepStatus.changed):
            todo.append(run)
        else:
            run.report.add(SIDELOAD_STEP, StepStatus.not_run, f"{step} did not complete")

    images = sorted(_archive_images(tuple(ctx.bundle.archives),
                                    sideload.plan_platform(ctx.plan, None))) if pin else []

    def one(run: NodeDeploy) -> None:
        if run in pin:
            ctx.progress(run.spec.name, "pinning side-loaded images")
            run.run_step(PIN_STEP, lambda: _pin(run.node, images))
            return
        ctx.progress(run.spec.name, "confirming side-loaded images")
        run.run_step(SIDELOAD_STEP, lambda: _confirm(ctx, run.node))

    fan_out(one, [*todo, *pin], limit=ctx.parallel, name="deploy-confirm")
