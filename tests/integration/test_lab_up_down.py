"""The lab against a real LXD: two nodes, isolation proven from each node, and a
teardown that leaves nothing behind.

Network safety: every request goes to an address of the lab itself. Isolation is
proven by routes (the nodes have no route to the services bridge) and by failing to
reach the lab's own simulated upstream, never by probing a public address.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.require import need, require_binary, require_root

pytestmark = [pytest.mark.integration, pytest.mark.lxd]

LAB = "itlab"
PREFERRED_SLOT = int(os.environ.get("K8S_AIRGAP_TEST_LAB_SLOT", "60"))


def _text(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return ""
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def snapshot() -> dict[str, set[str]]:
    """LXD objects, routes and every firewall rule on this machine."""
    from lab import host

    c = host.client()
    out: dict[str, set[str]] = {
        "projects": {p.name for p in c.projects.all()},
        "networks": {n.name for n in c.networks.all()},
        "images": {i.fingerprint for i in c.images.all()},
        "instances": {i.name for i in c.instances.all()},
        "routes": set(_text(["ip", "-4", "route", "show", "table", "all"]).splitlines()),
        "iptables": {ln for ln in _text(["iptables-save"]).splitlines()
                     if ln and not ln.startswith("#")},
        "nft": set(_text(["nft", "list", "ruleset"]).splitlines()),
    }
    return out


def _ours(line: str, spec: object) -> bool:
    from lab.topology import LabSpec

    assert isinstance(spec, LabSpec)
    net = re.escape(str(spec.block.network_address).rsplit(".", 2)[0])
    marks = [spec.project, *spec.bridges, spec.firewall_tag]
    octet = int(str(spec.block.network_address).split(".")[2])
    ours_addr = re.search(rf"\b{net}\.({octet}|{octet + 1})\.\d+", line)
    return bool(ours_addr) or any(m in line for m in marks)


def assert_nothing_on_the_host(project: str) -> None:
    """No squashfuse mount and nothing of the lab's instances under the storage pools."""
    from tests.support.labhost import leftovers

    left = leftovers(project)
    assert not left, f"lab.down left on the host: {left}"


@pytest.fixture(scope="module")
def lxd() -> None:
    require_root()
    require_binary("lxd")
    require_binary("debootstrap")
    from lab import host

    if not host.lxd_answers():
        host.setup_host()
    need(host.lxd_answers(), "LXD is not running (invoke lab.host)")
    host.initialise(host.client())


def test_lab_two_nodes_isolated_and_down_leaves_nothing(lxd: None, tmp_path: Path) -> None:
    from airgap.plan import Transport, load_plan
    from lab import lifecycle, network, state
    from lab.lxd import LXDNode
    from lab.topology import LabSpec

    # Leftovers of an interrupted earlier run (its slot read back from its bridge).
    lifecycle.down(state.spec_from_state(LAB, root=tmp_path), root=tmp_path)
    spec = LabSpec(name=LAB, nodes=2, slot=network.free_slot(PREFERRED_SLOT))
    before = snapshot()
    try:
        res = lifecycle.up(spec, root=tmp_path)
        assert res.state.instance_type == "container"  # no vhost_vsock on these machines
        assert res.state.stand_in and "real snapd" in res.state.runtime
        plan = load_plan(res.plan)
        assert [n.name for n in plan.nodes] == ["node-1", "node-2"]
        assert all(n.transport is Transport.lxd and n.lxd.project == spec.project
                   for n in plan.nodes)
        ca = (tmp_path / LAB / "ca.crt").read_bytes()
        reg, prx = spec.member("registry"), spec.member("proxy")
        upstream = spec.member("upstream")

        # Idempotent: a second up creates nothing.
        again = lifecycle.up(spec, root=tmp_path)
        assert set(again.created.values()) == {"running"}, again.created

        for m in spec.node_members:
            node = LXDNode(m.name, project=spec.project)
            node.write("/tmp/lab-ca.crt", ca)

            def curl(*args: str, node: LXDNode = node) -> tuple[int, str]:
                r = node.run(["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w",
                              "%{http_code}", *args], check=False, timeout=20)
                return r.returncode, r.stdout.strip() + r.stderr

            # The registry answers, over http and https (lab CA).
            assert curl("http://registry:5000/v2/")[1].startswith("200")
            assert curl("--cacert", "/tmp/lab-ca.crt",
                        f"https://{reg.airgap}:5443/v2/")[1].startswith("200")
            # The proxy answers (squid's own error page for a non-proxy request).
            r = node.run(["curl", "-sS", "-m", "5", "-i", f"http://{prx.airgap}:3128/"],
                         check=False, timeout=20)
            assert r.ok and "squid" in r.stdout.lower(), r
            # No route to the services bridge, no default route at all.
            routes = node.run(["ip", "-4", "route"]).stdout
            assert "default" not in routes, routes
            rg = node.run(["ip", "-4", "route", "get", str(upstream.services)], check=False)
            assert not rg.ok and "unreachable" in rg.stderr.lower(), rg
            # The simulated upstream is NOT reachable directly: not by address...
            code, out = curl("--cacert", "/tmp/lab-ca.crt", f"https://{upstream.services}/v2/")
            assert code in (7, 28), out
            # ...and its names do not resolve on the nodes.
            code, out = curl("--cacert", "/tmp/lab-ca.crt", "https://ghcr.io/v2/")
            assert code == 6, out
            # It IS reachable through the proxy, by name, trusted through the simulated
            # web PKI (the lab's public CA in the system store), not the registry's CA.
            r = node.run(["curl", "-sS", "-m", "10", "--proxy", "http://proxy:3128",
                          "https://ghcr.io/v2/canonical/k8s-snap/pause/tags/list"],
                         check=False, timeout=30)
            assert r.ok and '"3.10"' in r.stdout, r
            r = node.run(["curl", "-sS", "-m", "10", "--proxy", "http://proxy:3128",
                          "https://registry-1.docker.io/v2/library/busybox/tags/list"],
                         check=False, timeout=30)
            assert r.ok and '"1.36"' in r.stdout, r
            # The proxy's allow-list: a lab host that is not an upstream registry is refused.
            code, out = curl("--proxy", "http://proxy:3128", "http://registry:5000/v2/")
            assert out.startswith("403"), out
            # The host's services are closed to the air-gapped bridge.
            code, out = curl("-m", "2", f"http://{spec.airgap_gateway}:22/")
            assert code in (7, 28), out
            # Real snapd answers; nothing of k8s yet: deploy installs it.
            assert re.search(r"^snapd\s+2\.", node.run(["snap", "version"]).stdout, re.M)
            assert node.run(["snap", "list", "k8s"], check=False).returncode != 0
            assert not node.run(["test", "-e", "/etc/k8s-airgap/stand-in"], check=False).ok
    finally:
        down = lifecycle.down(spec, root=tmp_path)
    after = snapshot()
    # The lab's directory, with its CAs' private keys, goes with the lab.
    assert not (tmp_path / LAB).exists(), sorted((tmp_path / LAB).rglob("*"))
    assert any(r.startswith(f"state {tmp_path / LAB}") for r in down.removed), down.removed

    for key in before:
        new = {x for x in after[key] - before[key] if _ours(x, spec)}
        gone = {x for x in before[key] - after[key] if _ours(x, spec)}
        assert not new, f"lab.down left {key} behind: {sorted(new)}"
        assert not gone, f"lab.down removed {key} it did not make: {sorted(gone)}"
    assert spec.project not in after["projects"]
    assert_nothing_on_the_host(spec.project)
    assert not set(spec.bridges) & after["networks"]
    # Everything else is exactly as before, unless another test changed it meanwhile.
    others = {k: sorted(after[k] ^ before[k]) for k in before if after[k] != before[k]}
    if others:
        print(f"changes not made by this lab (concurrent tests?): {others}")


def test_lab_down_cleans_a_half_built_lab(lxd: None, tmp_path: Path) -> None:
    """up interrupted after the project and one bridge: down still removes everything."""
    from lab import host, instances, lifecycle, network, state
    from lab.topology import LabSpec

    lifecycle.down(state.spec_from_state("ithalf", root=tmp_path), root=tmp_path)
    spec = LabSpec(name="ithalf", nodes=1, slot=network.free_slot(PREFERRED_SLOT + 1))
    before = snapshot()
    host.add_blackhole(spec)
    host.add_rules(spec)
    instances.ensure_project(spec)
    c = host.client()
    c.networks.create(spec.airgap_bridge, type="bridge",
                      config=network.bridge_config(spec, spec.airgap_bridge))
    mid = snapshot()
    assert spec.project in mid["projects"] and spec.airgap_bridge in mid["networks"]
    assert any(spec.firewall_tag in r for r in mid["iptables"])
    res = lifecycle.down(spec, root=tmp_path)
    assert f"project {spec.project}" in res.removed
    after = snapshot()
    for key in before:
        assert not {x for x in after[key] ^ before[key] if _ours(x, spec)}, key
