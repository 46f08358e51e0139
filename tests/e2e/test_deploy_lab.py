"""preflight and deploy against the lab's nodes (LXD containers), using the lab's plan.

The k8s snap cannot be downloaded here, so the nodes run the lab's runtime stand-in
and the bundle has no snaps: deploy must say that the snap, bootstrap, join and Ready
steps were skipped and why, and still configure the runtime for real (hosts.d with the
lab CA, the proxy drop-in, the placeholder route), and a second run must change
nothing. Network safety: every request goes to the lab's own addresses.
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_root()
    require_binary("lxd")
    require_binary("debootstrap")
    from lab import host, lifecycle, network
    from lab.topology import LabSpec, Runtime

    if not host.lxd_answers():
        host.setup_host()
    need(host.lxd_answers(), "LXD is not running (invoke lab.host)")
    host.initialise(host.client())
    root = tmp_path_factory.mktemp("lab")
    lifecycle.down(LabSpec(name=LAB, nodes=2, slot=SLOT), root=root)  # leftovers
    # The runtime stand-in without snapd: this test needs it until deploy installs the
    # lab's stand-in snaps into the real snapd (issue 13, deploy --dangerous).
    spec = LabSpec(name=LAB, nodes=2, slot=network.free_slot(SLOT), runtime=Runtime.stand_in)
    try:
        result = lifecycle.up(spec, root=root)
        yield Lab(result.plan, root)
    finally:
        lifecycle.down(spec, root=root)


def snapless_bundle(plan_path: Path, out: Path) -> Path:
    """A bundle as `invoke prepare` would write it, minus the snaps it cannot download."""
    from airgap.bundle import MANIFEST, Manifest, bundle_files, write_manifest
    from airgap.plan import load_plan, workload_images
    from airgap.plan.lock import ImageLock, LockedImage, write_lock
    from airgap.snaps import hash_file

    plan = load_plan(plan_path)
    # The lab's images are fabricated with real names; deploy needs the names (which
    # registries get a hosts.toml), not the digests, which the lab's proof checks.
    images = [LockedImage(ref, "sha256:" + "0" * 64, source="workload")
              for ref in workload_images(plan)]
    out.mkdir(parents=True)
    write_lock(out / "images.lock", ImageLock(list(plan.platforms), images))
    files = {rel: hash_file(out / rel) for rel in bundle_files(out)}
    write_manifest(out, Manifest(files=files, snaps=[], images=images,
                                 platforms=list(plan.platforms), tools={},
                                 signature_check=False))
    assert (out / MANIFEST).is_file()
    return out


def test_preflight_and_deploy_on_lab_nodes(lab: Lab, tmp_path: Path) -> None:
    from airgap.deploy import STAND_IN_REASON, StepStatus, deploy
    from airgap.nodes import build_nodes
    from airgap.plan import PROXY_DROPIN, load_plan
    from airgap.preflight import CheckStatus, preflight
    from lab.lxd import TRANSPORTS

    plan = load_plan(lab.plan)
    nodes = build_nodes(plan, transports=TRANSPORTS)
    bundle = snapless_bundle(lab.plan, tmp_path / "bundle")

    # The simulated upstream's certificate comes from the lab's "public" CA (the
    # simulated web PKI, trusted by every lab instance); the private registry's lab CA
    # is trusted only through the plan's mirror.ca_file, as on a real site.
    before = preflight(plan, nodes, bundle=bundle)
    for checks in before.nodes:
        for c in checks.named("ports -> "):
            assert c.status is CheckStatus.ok, (checks.name, c)
        for c in checks.named("proxy -> "):
            assert c.status is CheckStatus.ok, (checks.name, c)
        assert checks.get("mirror").status is CheckStatus.ok, checks.get("mirror")
        assert checks.get("NO_PROXY").status is CheckStatus.ok
        assert checks.get("snapd").status is CheckStatus.skip
        assert "runtime stand-in" in checks.get("snapd").detail

    report = deploy(plan, nodes, bundle)
    for nr in report.nodes:
        assert nr.stand_in, nr
        assert not nr.failed, [(s.step, s.detail) for s in nr.steps]
        for step in ("snaps", "ready"):
            detail = next(s.detail for s in nr.steps if s.step == step)
            assert STAND_IN_REASON in detail, (nr.name, step, detail)
        assert nr.status_of("runtime") is StepStatus.changed
    first = plan.control_plane.name
    assert report.node(first).status_of("bootstrap") is StepStatus.skipped
    assert plan.proxy is not None
    for n in plan.nodes:
        node = nodes[n.name]
        assert node.run(["test", "-s", PROXY_DROPIN], check=False).ok
        env = node.run(["systemctl", "show", "snap.k8s.containerd", "-p", "Environment"]).stdout
        assert f"HTTPS_PROXY={plan.proxy.https}" in env, env
        assert node.run(["ip", "-4", "route", "show", "default"]).stdout.strip()
        hosts = node.run(["sh", "-c", "ls /etc/containerd/hosts.d"]).stdout.split()
        assert hosts, "no hosts.d entries written"

    after = preflight(plan, nodes, bundle=bundle)
    for checks in after.nodes:
        assert checks.get("default route").status is CheckStatus.ok

    again = deploy(plan, nodes, bundle)
    for nr in again.nodes:
        changed = [s.step for s in nr.steps if s.status is StepStatus.changed]
        assert changed == [], (nr.name, changed)
    print(json.dumps({n.name: [(s.step, s.status.value, s.detail) for s in n.steps]
                      for n in again.nodes}, indent=1))
