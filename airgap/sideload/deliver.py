"""Delivery: copy the archives to every node, restart the runtime (it imports only at
start), and confirm each image and digest in namespace k8s.io on every node."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.nodes import Node
from airgap.plan import CONTAINERD_UNIT, SIDELOAD_DIR, Plan
from airgap.plan.images import ImageRef
from airgap.progress import Say, quiet
from airgap.sideload.select import plan_platform
from airgap.sideload.validate import ArchiveReport, validate_archives
from airgap.wait import poll

CONFIRM_TIMEOUT = 120.0


CONFIRM_INTERVAL = 2.0


SNAP_CTR = "/snap/k8s/current/bin/ctr"


@dataclass(frozen=True)
class RuntimeAccess:
    """How to reach the container runtime on a node.

    The defaults are the k8s snap's: archives in /var/snap/k8s/common/images, imported
    only when containerd starts. ``restart`` returns how it restarted the runtime, or
    None when the runtime is not installed (the archives are then imported at its first
    start, and cannot be confirmed yet).
    """

    images_dir: str = SIDELOAD_DIR
    ctr: tuple[str, ...] | None = None  # None: `ctr` on PATH, else the snap's
    restart: Callable[[Node], str | None] | None = None


def _probe(node: Node, argv: Sequence[str]) -> bool:
    try:
        return node.run(argv, check=False, timeout=60).ok
    except AirgapError:  # command not found on this transport
        return False


def restart_runtime(node: Node) -> str | None:
    """snap restart when the snap's containerd runs; the lab's stand-in is a plain unit.

    An installed k8s snap is not a running containerd: until bootstrap/join configures
    and starts it, its unit is inactive, and restarting it would fail (or start an
    unconfigured runtime). Then None: the snap imports the archives when it starts.
    """
    if _probe(node, ["snap", "list", "k8s"]):
        if not _probe(node, ["systemctl", "is-active", "--quiet", CONTAINERD_UNIT]):
            return None
        node.run(["snap", "restart", "k8s.containerd"], timeout=300)
        return "snap restart k8s.containerd"
    if _probe(node, ["systemctl", "cat", f"{CONTAINERD_UNIT}.service"]):
        node.run(["systemctl", "restart", CONTAINERD_UNIT], timeout=300)
        return f"systemctl restart {CONTAINERD_UNIT}"
    return None


def ctr_command(node: Node, runtime: RuntimeAccess | None = None) -> list[str]:
    """How to run ctr on the node: the runtime's own, the PATH's, or the snap's."""
    runtime = runtime or RuntimeAccess()
    if runtime.ctr is not None:
        return list(runtime.ctr)
    if _probe(node, ["ctr", "--version"]):
        return ["ctr"]
    return [SNAP_CTR]


def parse_ctr_images(text: str) -> dict[str, str]:
    """name -> digest from `ctr images ls` (columns REF TYPE DIGEST ...)."""
    out: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[2].startswith("sha"):
            out[cols[0]] = cols[2]
    return out


@dataclass(frozen=True)
class DeliveryRow:
    image: str
    expected: str | None
    found: str | None
    status: str  # ok, missing, wrong digest, pending, present (digest not pinned)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "present (digest not pinned)")


@dataclass
class NodeDelivery:
    node: str
    copied: list[str] = field(default_factory=list)
    restart: str | None = None
    rows: list[DeliveryRow] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.rows)

    @property
    def pending(self) -> bool:
        """The runtime is not installed yet: the archives are imported at its first start."""
        return self.restart is None and self.error is None


def _rows(found: dict[str, str], want: dict[str, str | None]) -> list[DeliveryRow]:
    rows = []
    for name, digest in sorted(want.items()):
        got = found.get(name)
        if got is None:
            status = "missing"
        elif digest is None:
            status = "present (digest not pinned)"
        else:
            status = "ok" if got == digest else "wrong digest"
        rows.append(DeliveryRow(name, digest, got, status))
    return rows


def _confirm(
    node: Node, runtime: RuntimeAccess, want: dict[str, str | None], timeout: float
) -> list[DeliveryRow]:
    ctr = ctr_command(node, runtime)

    def rows() -> list[DeliveryRow]:
        return _rows(parse_ctr_images(node.run([*ctr, "-n", "k8s.io", "images", "ls"]).stdout),
                     want)

    found, _ = poll(rows, lambda rs: all(r.ok for r in rs), timeout=timeout,
                    interval=CONFIRM_INTERVAL)
    return found


def confirm_images(
    node: Node,
    want: dict[str, str | None],
    *,
    runtime: RuntimeAccess | None = None,
    timeout: float = CONFIRM_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[DeliveryRow]:
    """Poll `ctr images ls` until every wanted image is there with its digest.

    For a containerd that has just been started (bootstrap/join): a failing ctr (the
    socket is not up yet) counts as "nothing imported yet", not as an error.
    """
    ctr = ctr_command(node, runtime)

    def rows() -> list[DeliveryRow]:
        res = node.run([*ctr, "-n", "k8s.io", "images", "ls"], check=False, timeout=60)
        return _rows(parse_ctr_images(res.stdout) if res.ok else {}, want)

    found, _ = poll(rows, lambda rs: all(r.ok for r in rs), timeout=timeout,
                    interval=CONFIRM_INTERVAL, clock=clock, sleep=sleep)
    return found


def _deliver_one(
    node: Node,
    reports: Sequence[ArchiveReport],
    runtime: RuntimeAccess,
    timeout: float,
    progress: Say,
) -> NodeDelivery:
    result = NodeDelivery(node.name)
    want = {img.name: img.digest for rep in reports for img in rep.images}
    try:
        for rep in reports:
            progress(f"{node.name}: copy {rep.path.name}")
            node.put(rep.path, f"{runtime.images_dir}/{rep.path.name}", 0o644)
            result.copied.append(rep.path.name)
        progress(f"{node.name}: restart the runtime")
        result.restart = (runtime.restart or restart_runtime)(node)
        if result.restart is None:
            result.rows = [DeliveryRow(n, d, None, "pending") for n, d in sorted(want.items())]
            return result
        progress(f"{node.name}: confirm images")
        result.rows = _confirm(node, runtime, want, timeout)
    except AirgapError as exc:
        result.error = str(exc).splitlines()[0]
    return result


def deliver(
    plan: Plan,
    nodes: Sequence[Node],
    archives: Sequence[Path],
    *,
    expected: Sequence[ImageRef] | None = None,
    platform: str | None = None,
    runtime: RuntimeAccess | None = None,
    timeout: float = CONFIRM_TIMEOUT,
    progress: Say = quiet,
) -> list[NodeDelivery]:
    """Validate every archive (nothing moves if one fails), copy them to every node in
    parallel, restart the runtime (import happens only at start), and confirm on each
    node that every image is in namespace k8s.io with the expected digest.

    A node where the runtime is not installed yet gets status "pending": the snap
    imports the archives when containerd first starts (deploy).
    """
    if not archives:
        raise AirgapError("no archives to deliver",
                          resolution="Run `invoke sideload --out DIR` first.")
    if not nodes:
        raise AirgapError(f"{plan.source}: no nodes to deliver to",
                          resolution="Name the nodes with --node, or add them to the plan's "
                          "nodes: list.")
    wanted = plan_platform(plan, platform)
    progress("validate archives")
    reports = validate_archives(list(archives), expected, wanted)
    rt = runtime or RuntimeAccess()
    return fan_out(lambda n: _deliver_one(n, reports, rt, timeout, progress), nodes,
                   name="deliver")


def delivery_outcome(results: Sequence[NodeDelivery]) -> tuple[str | None, str | None]:
    """(error, note): an error when a node failed to confirm its images; a note naming
    the nodes whose runtime is not installed yet (pending, not a failure)."""
    failed = [r.node for r in results if not r.ok and not r.pending]
    pending = [r.node for r in results if r.pending]
    error = f"side-loaded images not confirmed on {', '.join(failed)}" if failed else None
    note = (f"Runtime not installed on {', '.join(pending)}: the archives are imported when "
            "containerd first starts (invoke deploy)." if pending else None)
    return error, note
