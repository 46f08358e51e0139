"""What the proof shows of snapd on each node, and deploy run again against it.

After the three modes: each node's snapd version, `snap list` (revision, and the Notes
column that carries confinement and the hold) and whether snapd's unit for the
runtime is active. Then deploy with the same bundle (nothing may change), with a bundle
holding an older k8s (refused on every node, nothing installed) and with a newer one
(refused: deploy does not change a running cluster's revision), then `upgrade` with the
newer one (refreshed in place one node at a time: snapd keeps the cluster's state). Lab
installs are x-revisions, so deploy compares them by SHA3-384 and version, not by
revision number; the cases' details say which comparison decided.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from airgap import deploy as deploy_mod
from airgap.deploy.snapstep import parse_snap_list
from airgap.deploy.upgrade import UpgradeReport, upgrade
from airgap.errors import AirgapError
from airgap.nodes import Node
from airgap.plan import CONTAINERD_UNIT, Mode, Plan
from lab.report import DeployCase, Report, SnapdRecord, SnapRecord

if TYPE_CHECKING:
    from lab.proof.connected import Connected
    from lab.proof.steps import Steps

# The k8s stand-in snaps the proof builds: version and assertion revision. "main" is
# the bundle of the modes; "older" and "newer" are deployed over it afterwards.
SNAP_SETS = {"main": ("1.36.0", "101"), "older": ("1.35.9", "90"), "newer": ("1.36.1", "120")}

# What ran for real on the snapd nodes, and what the lab stood in for.
REAL_PARTS = (
    "snapd (Debian 13's, in each node): snap ack, snap install in order, --classic, "
    "x-revisions, refresh, hold, the services it generates",
    "containerd (Debian's) as snap.k8s.containerd.service, the unit snapd generates for "
    "the k8s snap's containerd app, serving the CRI that every pull went through",
    "the registry (Distribution), squid, the simulated upstream, regsync and regctl",
)
STAND_IN_PARTS = (
    "the k8s snap: built by the lab (lab/snapset.py) with the real snap's layout "
    "(classic, base core22, apps containerd and k8sd) and images.txt",
    "its assertions: signed by a lab authority that snapd does not trust, so `snap ack` "
    "refuses them and deploy --dangerous installs the snaps (x-revisions)",
    "the k8s CLI: bootstrap, join tokens bound to a name, join-cluster over HTTP to the "
    "k8sd app, local-node-status, kubectl get node (no kubelet, no Kubernetes API)",
    "the base (core22) and snapd snaps: busybox and snapd's info file, enough for snapd",
)

Deploy = Callable[[Path], deploy_mod.DeployReport]
Upgrade = Callable[[Path], UpgradeReport]


def snapd_record(name: str, node: Node) -> SnapdRecord:
    version = node.run(["snap", "version"], check=False, timeout=60).stdout
    snapd = next((line.split(None, 1)[1].strip() for line in version.splitlines()
                  if line.startswith("snapd ")), "?")
    rows = parse_snap_list(node.run(["snap", "list"], check=False).stdout)
    unit = node.run(["systemctl", "is-active", f"{CONTAINERD_UNIT}.service"],
                    check=False).stdout.strip() or "?"
    return SnapdRecord(name, snapd, unit, [
        SnapRecord(r.name, r.version, r.rev, ",".join(r.notes) or "-")
        for r in sorted(rows.values(), key=lambda r: r.name)])


def k8s_versions(nodes: Mapping[str, Node]) -> dict[str, str]:
    """Each node's k8s as `snap list` shows it: "VERSION (REV)", or "none"."""
    out = {}
    for name, node in nodes.items():
        row = parse_snap_list(node.run(["snap", "list", "k8s"], check=False).stdout).get("k8s")
        out[name] = f"{row.version} ({row.rev})" if row else "none"
    return out


def _snaps_detail(report: deploy_mod.DeployReport) -> str:
    return "; ".join(f"{n.name}: " + next((s.detail for s in n.steps if s.step == "snaps"), "?")
                     for n in report.nodes)


def case_again(deploy: Deploy, bundle: Path) -> DeployCase:
    rep = deploy(bundle)
    changed = [f"{n.name} {s.step}" for n in rep.nodes for s in n.steps
               if s.status is deploy_mod.StepStatus.changed]
    ok = rep.ok and not changed
    detail = ("no step changed; " + _snaps_detail(rep)) if ok else (
        f"changed: {', '.join(changed) or '-'}; failed: "
        + ", ".join(n.name for n in rep.nodes if n.failed))
    return DeployCase("same bundle again", "nothing changes", ok, detail)


def case_older(deploy: Deploy, bundle: Path, nodes: Mapping[str, Node],
               version: str) -> DeployCase:
    before = k8s_versions(nodes)
    try:
        rep = deploy(bundle)
    except AirgapError as exc:
        return DeployCase(f"older k8s {version}", "refused", False, f"raised: {exc.brief}")
    refused = all(n.status_of("snaps") is deploy_mod.StepStatus.failed
                  and "refusing to downgrade" in str(n.errors[0] if n.errors else "")
                  for n in rep.nodes)
    after = k8s_versions(nodes)
    ok = refused and after == before
    said = "; ".join(n.errors[0].brief for n in rep.nodes if n.errors)
    return DeployCase(f"older k8s {version}", "refused, nothing installed", ok,
                      f"{said}; k8s still {', '.join(f'{k}={v}' for k, v in after.items())}")


def case_newer(deploy: Deploy, bundle: Path, nodes: Mapping[str, Node],
               version: str) -> DeployCase:
    """deploy with a newer k8s over the running cluster: refused on every node (deploy
    does not change a running cluster's revision), nothing installed."""
    before = k8s_versions(nodes)
    rep = deploy(bundle)
    refused = all(n.status_of("snaps") is deploy_mod.StepStatus.failed
                  and "deploy does not change a running cluster's revision"
                  in str(n.errors[0] if n.errors else "") for n in rep.nodes)
    after = k8s_versions(nodes)
    said = "; ".join(n.errors[0].brief for n in rep.nodes if n.errors)
    return DeployCase(f"newer k8s {version} with deploy", "refused, points to upgrade",
                      refused and after == before,
                      f"{said}; k8s still {', '.join(f'{k}={v}' for k, v in after.items())}")


def case_upgrade(upgrade: Upgrade, bundle: Path, nodes: Mapping[str, Node], version: str,
                 plan: Plan) -> DeployCase:
    """invoke upgrade with that bundle: one node at a time, each healthy before the next."""
    rep = upgrade(bundle)
    after = k8s_versions(nodes)
    refreshed = all(v.startswith(f"{version} ") for v in after.values())
    members = [n for n in plan.nodes if deploy_mod.in_cluster(nodes[n.name], n.name)]
    order = ", ".join(f"{n.order}. {n.node} {n.from_version} ({n.from_revision}) -> "
                      f"{n.to_version} ({n.to_revision}) in {n.seconds:.0f} s"
                      for n in sorted(rep.nodes, key=lambda n: n.order))
    ok = rep.ok and refreshed and len(members) == len(plan.nodes)
    return DeployCase(f"upgrade to k8s {version}", "one node at a time, still in the cluster",
                      ok, f"{order}; k8s now {', '.join(f'{k}={v}' for k, v in after.items())}; "
                      f"{len(members)}/{len(plan.nodes)} still members"
                      + (f"; {rep.error.brief}" if rep.error else ""))


def deploy_cases(report: Report, steps: Steps, connected: Connected,
                 plans: Mapping[Mode, Plan], sets: Mapping[str, Path],
                 last_run: tuple[Plan, Path], work: Path, nodes: Mapping[str, Node],
                 trust: object, verify: Callable[[Path], object]) -> None:
    """deploy again (the last mode's plan and bundle), with an older and with a newer k8s:
    what snapd does with each."""
    last, bundle = last_run

    def run(plan: Plan) -> Callable[[Path], deploy_mod.DeployReport]:
        return lambda b: deploy_mod.deploy(plan, nodes, b, verify=verify, dangerous=True)

    def up(plan: Plan) -> Upgrade:
        return lambda b: upgrade(plan, nodes, b, verify=verify, dangerous=True)

    with steps.step("deploy again with the same bundle") as row:
        report.deploy_cases.append(case_again(run(last), bundle))
        row["detail"] = report.deploy_cases[-1].detail
    for label in ("older", "newer"):
        version, _ = SNAP_SETS[label]
        other = work / f"bundle-{label}"
        with steps.step(f"deploy a bundle with {label} k8s {version}") as row:
            connected.prepare(plans[Mode.mirror], other, from_dir=sets[label], trust=trust)
            if label == "older":
                case = case_older(run(plans[Mode.mirror]), other, nodes, version)
            else:
                case = case_newer(run(plans[Mode.mirror]), other, nodes, version)
            report.deploy_cases.append(case)
            row["detail"] = case.detail
        if label == "newer":
            with steps.step(f"upgrade to k8s {version} (one node at a time)") as row:
                case = case_upgrade(up(plans[Mode.mirror]), other, nodes, version,
                                    plans[Mode.mirror])
                report.deploy_cases.append(case)
                row["detail"] = case.detail
