"""preflight against real namespaces: every check runs on the node (LocalNode(netns=)).

node-1 (control plane) has no default route; node-2 (worker) has the placeholder route
and drops TCP 6443 with iptables. squid allows one registry name only; a mirror with a
private CA sits on the air-gapped network. preflight must report exactly that.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airgap.nodes import LocalNode
from airgap.plan import parse_plan
from airgap.plan.images import parse_image_ref
from airgap.preflight import (
    PORTS_ALL,
    PORTS_CONTROL_PLANE,
    PROBE_BASH,
    CheckStatus,
    preflight,
    probe_ports,
)
from tests.support.netns import NetnsLab
from tests.support.registry import Registry, TestCA
from tests.support.require import require_binary
from tests.support.squid import Squid

pytestmark = pytest.mark.integration

UPSTREAM_NAME = "registry.upstream.test"


def test_preflight_reports_missing_route_blocked_port_and_proxy_verdicts(
    tmp_path: Path,
    netns_factory: NetnsLab,
    registry_factory: Callable[..., Registry],
    squid_factory: Callable[..., Squid],
    test_ca: TestCA,
) -> None:
    require_binary("curl")
    require_binary("iptables")
    require_binary("python3")
    lab = netns_factory
    lab.network("airgap")
    lab.network("upstream")
    n1 = lab("node1", ["airgap"])
    n2 = lab("node2", ["airgap"])
    mirror_ns = lab("mirror", ["airgap"])
    proxy = lab("proxy", ["airgap", "upstream"])
    upstream = lab("upstream", ["upstream"])
    upstream_reg = registry_factory(
        "upstream", tls=True, ca=test_ca, cert=test_ca.issue([UPSTREAM_NAME]),
        bind=upstream.address, netns=upstream.name,
    )
    mirror = registry_factory(
        "mirror", tls=True, ca=test_ca, cert=test_ca.issue([mirror_ns.address]),
        bind=mirror_ns.address, netns=mirror_ns.name,
    )
    squid = squid_factory(
        bind=proxy.addresses["airgap"], netns=proxy.name, allow_hosts=[UPSTREAM_NAME],
        connect_ports=[upstream_reg.port], hosts={UPSTREAM_NAME: upstream.address},
    )
    n2.run(["ip", "route", "add", "default", "dev", "eth0"])
    n2.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "6443", "-j", "DROP"])
    # A firewall that rejects with a reset: before, "refused" counted as reachable.
    n2.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "REJECT",
            "--reject-with", "tcp-reset"])
    n2.run(["iptables", "-A", "INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP"])

    plan = parse_plan({
        "access": ["proxy", "mirror"],
        "proxy": {"https": squid.url},
        "mirror": {"url": mirror.url, "ca_file": str(test_ca.ca_cert)},
        "network": {"route_persistence": "none"},
        "nodes": [
            {"name": "node-1", "address": n1.address, "role": "control-plane",
             "transport": "local"},
            {"name": "node-2", "address": n2.address, "role": "worker", "transport": "local"},
        ],
    }, source="airgap.yaml", base_dir=tmp_path)
    # curl on the "node" trusts the test CA, as a real node trusts the registry's CA.
    trust = {"CURL_CA_BUNDLE": str(test_ca.ca_cert)}
    nodes = {
        "node-1": LocalNode("node-1", netns=n1.name, extra_env=trust),
        "node-2": LocalNode("node-2", netns=n2.name, extra_env=trust),
    }
    images = [
        parse_image_ref(f"{UPSTREAM_NAME}:{upstream_reg.port}/library/alpha:1"),
        parse_image_ref(f"denied.upstream.test:{upstream_reg.port}/library/beta:1"),
    ]
    report = preflight(plan, nodes, images=images)
    assert not report.ok
    one, two = report.node("node-1"), report.node("node-2")

    route1 = one.get("default route")
    assert route1.status is CheckStatus.fail
    assert "ip route replace default dev eth0" in route1.fix
    assert two.get("default route").status is CheckStatus.ok
    assert two.get("route persistent").status is CheckStatus.warn

    blocked = one.get("ports -> node-2")
    assert blocked.status is CheckStatus.fail
    assert blocked.detail == ("blocked: 6443 (timeout: dropped), 10250 (refused: a REJECT "
                              "rule or a TCP reset)"), blocked.detail
    assert f"from {n1.address} to {n2.address}" in blocked.fix
    assert "a REJECT rule or a reset answered" in blocked.fix
    vxlan = one.get("8472/udp -> node-2")
    assert vxlan.status is CheckStatus.fail and "no echo: dropped" in vxlan.detail, vxlan
    # A listener on node-1 answers every control-plane port: the path is proven.
    assert two.get("ports -> node-1").status is CheckStatus.ok
    assert two.get("ports -> node-1").detail == (
        f"{len(PORTS_ALL + PORTS_CONTROL_PLANE)} TCP ports open (a listener on node-1)")
    assert two.get("8472/udp -> node-1").status is CheckStatus.ok

    for checks in (one, two):
        allowed = checks.get(f"proxy -> {UPSTREAM_NAME}:{upstream_reg.port}")
        assert allowed.status is CheckStatus.ok, allowed
        assert allowed.detail == "CONNECT 200, registry answered 200"
        denied = checks.get(f"proxy -> denied.upstream.test:{upstream_reg.port}")
        assert denied.status is CheckStatus.fail
        assert "refused CONNECT (403)" in denied.detail
        assert checks.get("NO_PROXY").status is CheckStatus.ok
        assert checks.get("mirror").status is CheckStatus.ok, checks.get("mirror")
        assert checks.get("clock").status in (CheckStatus.ok, CheckStatus.warn)
    assert any("TCP_TUNNEL/200" in ln or "TCP_DENIED/403" in ln for ln in squid.access_lines())


def test_probe_from_namespace_tells_refused_from_filtered(netns_factory: NetnsLab) -> None:
    """The on-node probe itself, python3 and bash variants: open, refused, timeout, no route."""
    require_binary("python3")
    require_binary("iptables")
    lab = netns_factory
    lab.network("a")
    src = lab("src", ["a"])
    dst = lab("dst", ["a"])
    dst.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "2380", "-j", "DROP"])
    listener = dst.argv(["python3", "-c",
                         "import socket, time\n"
                         "s = socket.socket()\n"
                         f"s.bind(('{dst.address}', 6443)); s.listen(); time.sleep(60)"])

    proc = subprocess.Popen(listener, stdin=subprocess.DEVNULL)
    try:
        node = LocalNode("src", netns=src.name)
        targets = [f"{dst.address}:6443", f"{dst.address}:6400", f"{dst.address}:2380",
                   "10.213.255.254:6443"]  # inside the blackholed test range: no route
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = probe_ports(node, targets[:1], timeout=1)
            if got[targets[0]] == "open":
                break
            time.sleep(0.2)
        got = probe_ports(node, targets, timeout=2)
        assert got == {
            targets[0]: "open", targets[1]: "refused", targets[2]: "timeout",
            targets[3]: "ENETUNREACH",
        }
        # Same answers from bash's /dev/tcp where a node has no python3.
        res = node.run(["bash", "-c", PROBE_BASH, "probe", "2", *targets])
        lines = dict(line.split(" ", 1) for line in res.stdout.splitlines())
        assert lines == got
    finally:
        proc.kill()
        proc.wait()
