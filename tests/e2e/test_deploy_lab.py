"""preflight and deploy against the lab's nodes (LXD containers with Debian 13's snapd),
using the lab's plan and a bundle `prepare` made from the lab's stand-in snaps.

The k8s snap cannot be downloaded here: the lab builds stand-in snaps and signs them
with a lab authority. snapd trusts only Canonical's root, so deploy without
--dangerous must stop at `snap ack` (nothing installed), and with it must install
snapd, the base and k8s in that order, bootstrap and join through the stand-in CLI,
configure the runtime for real (hosts.d with the lab CA, the proxy drop-in, the
placeholder route) and hold refreshes, which preflight then checks; a second run must
change nothing. Network safety: every request goes to the lab's own addresses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.require import need, require_binary, require_root

pytestmark = [pytest.mark.e2e, pytest.mark.lxd]

LAB = "dploy"
SLOT = int(os.environ.get("K8S_AIRGAP_DEPLOY_LAB_SLOT", "91"))


@dataclass
class Lab:
    plan: Path
    root: Path
    bundle: Path
    trusted_root: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_root()
    require_binary("lxd")
    require_binary("debootstrap")
    require_binary("mksquashfs")
    from airgap.bundle import load_trust
    from lab import host, lifecycle, network
    from lab.lxd import LXDNode
    from lab.proof import connected_side
    from lab.snapset import signed_snapd_set
    from lab.standin import Authority
    from lab.topology import LabSpec

    if not host.lxd_answers():
        host.setup_host()
    need(host.lxd_answers(), "LXD is not running (invoke lab.host)")
    host.initialise(host.client())
    root = tmp_path_factory.mktemp("lab")
    lifecycle.down(LabSpec(name=LAB, nodes=2, slot=SLOT), root=root)  # leftovers
    spec = LabSpec(name=LAB, nodes=2, slot=network.free_slot(SLOT))
    try:
        result = lifecycle.up(spec, root=root)
        from airgap.plan import load_plan

        work = root / "work"
        work.mkdir()
        authority = Authority.create()
        trusted = authority.write_root(work / "lab-root.account-key.assert")
        info = LXDNode("node-1", project=spec.project).run(["cat", "/usr/lib/snapd/info"]).stdout
        from airgap.plan.images import DOCKER_HUB, parse_image_ref

        # The k8s snap's images.txt: the lab's images not on Docker Hub (as the proof).
        k8s_images = [i for i in spec.images if parse_image_ref(i).registry != DOCKER_HUB]
        made = signed_snapd_set(work / "snaps", authority, snapd_info=info, images=k8s_images)
        bundle = work / "bundle"
        connected_side(result.state, spec, work).prepare(
            load_plan(result.plan), bundle, from_dir=made["k8s"][0].parent,
            trust=load_trust(trusted, True))
        yield Lab(result.plan, root, bundle, trusted)
    finally:
        lifecycle.down(spec, root=root)


def test_preflight_and_deploy_on_lab_nodes(lab: Lab) -> None:
    from airgap.deploy import StepStatus, deploy
    from airgap.deploy.snapstep import parse_snap_list
    from airgap.nodes import build_nodes
    from airgap.plan import PROXY_DROPIN, load_plan
    from airgap.preflight import CheckStatus, preflight
    from lab.lxd import TRANSPORTS

    plan = load_plan(lab.plan)
    nodes = build_nodes(plan, transports=TRANSPORTS)

    # The simulated upstream's certificate comes from the lab's "public" CA (the
    # simulated web PKI, trusted by every lab instance); the private registry's lab CA
    # is trusted only through the plan's mirror.ca_file, as on a real site.
    before = preflight(plan, nodes, bundle=lab.bundle)
    for checks in before.nodes:
        for c in checks.named("ports -> "):
            assert c.status is CheckStatus.ok, (checks.name, c)
        for c in checks.named("proxy -> "):
            assert c.status is CheckStatus.ok, (checks.name, c)
        assert checks.get("mirror").status is CheckStatus.ok, checks.get("mirror")
        assert checks.get("NO_PROXY").status is CheckStatus.ok
        assert checks.get("snapd").status is CheckStatus.ok, checks.get("snapd")
        assert checks.get("snapd").detail.startswith("snapd 2."), checks.get("snapd")
        hold = checks.get("refresh hold")
        assert hold.status is CheckStatus.skip and "not installed yet" in hold.detail, hold

    # snapd refuses the lab authority's assertions: without --dangerous nothing goes in.
    refused = deploy(plan, nodes, lab.bundle, trusted_root=lab.trusted_root)
    for nr in refused.nodes:
        assert nr.status_of("snaps") is StepStatus.failed, nr.steps
        assert "snapd does not trust" in str(nr.errors[0]), nr.errors
        assert "cannot resolve prerequisite assertion" in str(nr.errors[0]), nr.errors
        assert not nodes[nr.name].run(["snap", "list", "k8s"], check=False).ok

    report = deploy(plan, nodes, lab.bundle, trusted_root=lab.trusted_root, dangerous=True)
    for nr in report.nodes:
        assert not nr.failed, [(s.step, s.detail) for s in nr.steps]
        assert nr.dangerous == ["snapd", "core22", "k8s"], nr.dangerous
        for step in ("snaps", "hold", "runtime"):
            assert nr.status_of(step) is StepStatus.changed, (nr.name, step, nr.steps)
        assert nr.status_of("ready") is StepStatus.done, nr.steps  # "Ready after N s"
    first = plan.control_plane.name
    assert report.node(first).status_of("bootstrap") is StepStatus.changed
    assert plan.proxy is not None
    for n in plan.nodes:
        node = nodes[n.name]
        rows = parse_snap_list(node.run(["snap", "list"]).stdout)
        assert [rows[s].rev for s in ("snapd", "core22", "k8s")] == ["x1"] * 3, rows
        assert rows["k8s"].notes == ("classic", "held"), rows["k8s"]
        unit = "snap.k8s.containerd.service"
        assert node.run(["systemctl", "is-active", unit]).stdout.strip() == "active"
        assert node.run(["test", "-s", PROXY_DROPIN], check=False).ok
        env = node.run(["systemctl", "show", unit, "-p", "Environment"]).stdout
        assert f"HTTPS_PROXY={plan.proxy.https}" in env, env
        assert node.run(["ip", "-4", "route", "show", "default"]).stdout.strip()
        hosts = node.run(["sh", "-c", "ls /etc/containerd/hosts.d"]).stdout.split()
        assert hosts, "no hosts.d entries written"
        status = node.run(["k8s", "local-node-status"]).stdout
        assert f"name: {n.name}" in status, status
    members = nodes[first].run(["k8s", "kubectl", "get", "node", "-o", "json"]).stdout
    assert sorted(i["metadata"]["name"] for i in json.loads(members)["items"]) == sorted(
        n.name for n in plan.nodes)

    after = preflight(plan, nodes, bundle=lab.bundle)
    for checks in after.nodes:
        assert checks.get("default route").status is CheckStatus.ok
        hold = checks.get("refresh hold")
        assert hold.status is CheckStatus.ok and "classic,held" in hold.detail, hold

    again = deploy(plan, nodes, lab.bundle, trusted_root=lab.trusted_root, dangerous=True)
    for nr in again.nodes:
        changed = [s.step for s in nr.steps if s.status is StepStatus.changed]
        assert changed == [], (nr.name, changed)
        detail = next(s.detail for s in nr.steps if s.step == "snaps")
        assert "same SHA3-384" in detail, detail
    print(json.dumps({n.name: [(s.step, s.status.value, s.detail) for s in n.steps]
                      for n in again.nodes}, indent=1))
