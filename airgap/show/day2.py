"""Deploy, upgrade and status on screen: each function is a task's body (tasks.py
parses the flags). Every node a task changes is recorded in the site's history
(airgap.deploy.site), which `status` shows beside what each node runs now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from airgap.bundle.verify import SignerPolicy
from airgap.cli import UserExit
from airgap.deploy.upgrade import UpgradeReport
from airgap.errors import AirgapError
from airgap.nodes import Node, build_nodes, close_nodes
from airgap.plan import Plan, load_plan


@dataclass(frozen=True)
class RolloutArgs:
    """What deploy and upgrade share: the plan, the bundle, who, and the trust flags."""

    plan: Path
    bundle: Path
    nodes: Sequence[str]
    trusted_root: Path | None
    check_signatures: bool
    signers: SignerPolicy
    dangerous: bool
    timeout: float


def _nodes(p: Plan, only: Sequence[str], transports: Any) -> dict[str, Node]:
    """The named nodes and, for adding one later, the bootstrap node (asked for the
    cluster's revision and a join token, not deployed)."""
    names = list(dict.fromkeys([*only, p.control_plane.name])) if only else None
    return build_nodes(p, names, transports=transports)


def run_deploy(err: Console, a: RolloutArgs, transports: Any) -> None:
    from airgap.deploy import deploy
    from airgap.show.deploy import print_report

    p = load_plan(a.plan)
    nodes = _nodes(p, a.nodes, transports)
    try:
        with err.status("deploy") as status:
            report = deploy(
                p, nodes, a.bundle, ready_timeout=a.timeout, trusted_root=a.trusted_root,
                check_signatures=a.check_signatures, dangerous=a.dangerous,
                signers=a.signers, only=list(a.nodes) or None, record_site=True,
                on_progress=lambda n, msg: status.update(f"deploy: {n}: {msg}"))
    finally:
        close_nodes(nodes)
    failed = print_report(report, err)
    if failed:
        raise UserExit(f"Error: deploy failed on {', '.join(failed)}; fix it and run deploy "
                       "again (finished steps are skipped)")


def run_upgrade(err: Console, a: RolloutArgs, batch: int, transports: Any) -> None:
    from airgap.deploy.upgrade import upgrade

    p = load_plan(a.plan)
    nodes = build_nodes(p, list(a.nodes) or None, transports=transports)
    try:
        with err.status("upgrade") as status:
            report = upgrade(
                p, nodes, a.bundle, batch=batch, trusted_root=a.trusted_root,
                check_signatures=a.check_signatures, signers=a.signers,
                dangerous=a.dangerous, ready_timeout=a.timeout, record_site=True,
                progress=lambda n, msg: status.update(f"upgrade: {n}: {msg}"))
    finally:
        close_nodes(nodes)
    out = Console()
    for line in report.images:
        err.print(f"images: {line}")
    out.print(upgrade_table(report))
    if report.error is not None:
        raise UserExit(f"Error: {report.error}")
    done = sum(1 for n in report.nodes if n.status == "upgraded")
    out.print(f"Upgrade to k8s {report.target}: {done} node(s) refreshed, "
              f"{len(report.nodes) - done} already there.")


_STATUS_STYLE = {"upgraded": "green", "already": "green", "failed": "bold red",
                 "not run": "dim"}


def upgrade_table(report: UpgradeReport) -> Table:
    t = Table(title=f"upgrade to k8s {report.target} ({report.bundle})")
    for col in ("order", "node", "role", "from", "to", "time", "status", "detail"):
        t.add_column(col)
    for n in sorted(report.nodes, key=lambda n: (n.order or 10**6, n.node)):
        t.add_row(str(n.order or "-"), n.node, n.role,
                  f"{n.from_version} ({n.from_revision})",
                  f"{n.to_version} ({n.to_revision})" if n.to_version else "-",
                  f"{n.seconds:.0f} s" if n.seconds else "-",
                  f"[{_STATUS_STYLE.get(n.status, '')}]{n.status}[/]", n.detail)
    return t


def run_status(err: Console, plan: Path, transports: Any, live: bool = True) -> None:
    """Per node: the bundle the site's history names, and what the node runs now."""
    from airgap.deploy.site import manifest_copy, read_history, site_dir

    p = load_plan(plan)
    history = read_history(p)
    now: dict[str, str] = {}
    if live:
        nodes = build_nodes(p, None, transports=transports)
        try:
            now = {n: _live(node) for n, node in nodes.items()}
        finally:
            close_nodes(nodes)
    out = Console()
    out.print(status_table(p, history.nodes, now))
    last = history.last()
    if last is None:
        err.print(f"No history yet in {site_dir(p)}: deploy or upgrade writes it.")
        return
    copy = manifest_copy(p, last.manifest_sha256)
    out.print(f"Last bundle the site received: sha256 {last.manifest_sha256} "
              f"({last.task}, {last.at}).")
    if copy is not None:
        out.print(f"Its manifest, for `invoke prepare --since` on the connected side: {copy}")


def _live(node: Node) -> str:
    from airgap.deploy.snapstep import snap_row

    try:
        row = snap_row(node, "k8s")
    except AirgapError as exc:
        return f"unreachable ({exc.brief})"
    return f"{row.version} ({row.rev})" if row else "k8s not installed"


def status_table(p: Plan, records: Mapping[str, Any], live: Mapping[str, str]) -> Table:
    t = Table(title=f"site status ({p.source})")
    for col in ("node", "role", "bundle (manifest sha256)", "k8s (recorded)", "since",
                "by", "k8s (now)"):
        t.add_column(col)
    for s in p.nodes:
        r = records.get(s.name)
        now = live.get(s.name, "-")
        mismatch = r is not None and now != "-" and now != f"{r.k8s_version} ({r.k8s_revision})"
        t.add_row(s.name, s.role.value, r.manifest_sha256[:16] if r else "-",
                  f"{r.k8s_version} ({r.k8s_revision})" if r else "-",
                  r.at if r else "-", r.task if r else "-",
                  f"[bold yellow]{now}[/]" if mismatch else now)
    return t
