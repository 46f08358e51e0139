"""preflight against recording fake Nodes: each check's verdict, detail and fix."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from airgap.nodes import RunResult
from airgap.plan import PROXY_DROPIN, Plan, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.preflight import (
    DF_SCRIPT,
    PORTS_ALL,
    PORTS_CONTROL_PLANE,
    SNAPD_SOCKET,
    CheckStatus,
    dropin_no_proxy,
    no_proxy_gaps,
    preflight,
)
from airgap.render.proxy import render_proxy_dropin
from airgap.render.route import NETPLAN_FILE, netplan_route
from tests.support.fakes import FakeCluster, FakeNode

ADDRS = {"node-1": "10.30.0.11", "node-2": "10.30.0.12", "node-3": "10.30.0.13"}
IMAGES = [parse_image_ref("ghcr.io/canonical/k8s-snap/pause:3.10"),
          parse_image_ref("docker.io/library/nginx:1.27")]
NOW = 1_800_000_000.0


def make_plan(access: Sequence[str] = ("proxy",), **extra: object) -> Plan:
    roles = ["control-plane", "worker", "worker"]
    nodes = [{"name": n, "address": a, "role": r, "transport": "local"}
             for (n, a), r in zip(ADDRS.items(), roles, strict=True)]
    data: dict[str, object] = {"access": list(access), "nodes": nodes}
    if "proxy" in access:
        data["proxy"] = {"https": "http://10.30.0.2:3128"}
    if "mirror" in access:
        data["mirror"] = {"url": "http://10.30.0.3:5000"}
    data.update(extra)
    return parse_plan(data, source="airgap.yaml")


def probe_answer(blocked: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    def answer(argv: list[str], _input: bytes | None) -> RunResult:
        targets = argv[4:]
        out = {t: (blocked or {}).get(t, "refused") for t in targets}
        return RunResult(argv, 0, json.dumps(out), "")
    return answer


def df(avail_kib: int, mount: str) -> RunResult:
    return RunResult([], 0, "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
                     f"/dev/sda1 100000000 1000000 {avail_kib} 2% {mount}\n", "")


def healthy(name: str, **kw: object) -> FakeNode:
    node = FakeNode(name, cluster=FakeCluster(), address=ADDRS[name],
                    default_route="default dev eth0 scope link", **kw)  # type: ignore[arg-type]
    node.files[NETPLAN_FILE] = netplan_route("eth0").encode()
    node.files[SNAPD_SOCKET] = b""
    node.on("python3", answer=probe_answer())
    node.on("curl", answer=RunResult([], 0, "401 200", ""))
    node.on("sh", "-c", DF_SCRIPT, answer=df(90_000_000, "/"))
    node.on("snap", "version", answer=RunResult([], 0, "snap    2.63\nsnapd   2.63\n", ""))
    node.on("date", answer=RunResult([], 0, f"{int(NOW)}\n", ""))
    node.on("timedatectl", answer=RunResult([], 0, "yes\n", ""))
    return node


def run(plan: Plan, nodes: dict[str, FakeNode], **kw: object):  # type: ignore[no-untyped-def]
    return preflight(plan, dict(nodes), images=IMAGES, clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def test_all_healthy_passes_and_probes_from_each_node() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    report = run(plan, nodes)
    assert report.ok, [(n.name, n.failed) for n in report.nodes]
    probe = nodes["node-2"].issued("python3")[0]
    targets = probe[4:]
    # node-2 probes node-1 (control plane: all + cp ports) and node-3 (worker ports).
    assert targets == [f"10.30.0.11:{p}" for p in PORTS_ALL + PORTS_CONTROL_PLANE] + [
        f"10.30.0.13:{p}" for p in PORTS_ALL
    ]
    checks = report.node("node-2")
    assert checks.get("8472/udp (VXLAN)").status is CheckStatus.skip
    assert "UDP cannot be checked" in checks.get("8472/udp (VXLAN)").detail
    assert checks.get("proxy -> ghcr.io").status is CheckStatus.ok
    curl = nodes["node-2"].issued("curl")
    assert [c[-1] for c in curl] == ["https://registry-1.docker.io/v2/", "https://ghcr.io/v2/"]
    assert all(c[c.index("--proxy") + 1] == "http://10.30.0.2:3128" for c in curl)


def test_missing_default_route_fails_with_the_command_to_add_it() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    nodes["node-3"].default_route = ""
    report = run(plan, nodes)
    assert not report.ok
    check = report.node("node-3").get("default route")
    assert check.status is CheckStatus.fail
    assert "ip route replace default dev eth0" in check.fix
    assert NETPLAN_FILE in check.fix
    assert report.node("node-1").get("default route").status is CheckStatus.ok


def test_placeholder_route_without_persistence_fails() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    del nodes["node-1"].files[NETPLAN_FILE]
    check = run(plan, nodes).node("node-1").get("route persistent")
    assert check.status is CheckStatus.fail
    assert "lost at reboot" in check.detail


def test_real_gateway_needs_no_placeholder() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    nodes["node-1"].default_route = "default via 10.30.0.1 dev eth0"
    del nodes["node-1"].files[NETPLAN_FILE]
    checks = run(plan, nodes).node("node-1")
    assert checks.get("default route").status is CheckStatus.ok
    assert not checks.named("route persistent")


def test_blocked_port_is_reported_per_target_with_fix() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    nodes["node-2"].on("python3", answer=probe_answer(
        {"10.30.0.11:6443": "timeout", "10.30.0.11:2379": "EHOSTUNREACH"}))
    report = run(plan, nodes)
    check = report.node("node-2").get("ports -> node-1")
    assert check.status is CheckStatus.fail
    assert check.detail == "blocked: 6443 (timeout), 2379 (EHOSTUNREACH)"
    assert "allow TCP 6443,2379 from 10.30.0.12 to 10.30.0.11" in check.fix
    assert report.node("node-2").get("ports -> node-3").status is CheckStatus.ok


def test_bash_fallback_when_no_python() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    node = nodes["node-3"]
    node.missing_commands.add("python3")
    node.on("bash", answer=lambda a, _i: RunResult(a, 0, "".join(
        f"{t} {'timeout' if t.endswith(':10250') else 'refused'}\n" for t in a[5:]), ""))
    report = run(plan, nodes)
    assert not node.issued("python3")
    assert node.issued("bash")[0][4] == "3"  # time-out in whole seconds
    check = report.node("node-3").get("ports -> node-2")
    assert check.detail == "blocked: 10250 (timeout)"


@pytest.mark.parametrize(
    ("rc", "out", "stderr", "expect"),
    [
        (56, "000 403", "curl: (56) CONNECT tunnel failed, response 403", "refused CONNECT (403)"),
        (7, "000 000", "curl: (7) Failed to connect to 10.30.0.2 port 3128", "not reachable"),
        (60, "000 200", "curl: (60) SSL certificate problem", "TLS fails"),
    ],
)
def test_proxy_failures_are_told_apart(rc: int, out: str, stderr: str, expect: str) -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    nodes["node-1"].on("curl", answer=RunResult([], rc, out, stderr))
    check = run(plan, nodes).node("node-1").get("proxy -> ghcr.io")
    assert check.status is CheckStatus.fail
    assert expect in check.detail
    assert check.fix


def test_no_proxy_coverage() -> None:
    plan = make_plan(("proxy", "mirror"))
    rendered = dropin_no_proxy(render_proxy_dropin(plan).text)
    assert rendered is not None
    assert no_proxy_gaps(rendered, plan) == []
    assert no_proxy_gaps("localhost,10.30.0.0/24", plan) == ["10.1.0.0/16", "10.152.183.0/24"]
    assert no_proxy_gaps("localhost,10.1.0.0/16,10.152.183.0/24,10.30.0.11", plan) == [
        "10.30.0.12", "10.30.0.13", "10.30.0.3"]
    assert no_proxy_gaps("10.0.0.0/8,localhost", plan) == []
    domain_plan = make_plan(("proxy", "mirror"), mirror={"url": "https://reg.lab.internal:5000"})
    assert no_proxy_gaps("10.0.0.0/8,localhost,.lab.internal", domain_plan) == []
    assert no_proxy_gaps("10.0.0.0/8,localhost,other.internal", domain_plan) == [
        "reg.lab.internal"]


def test_existing_dropin_without_pod_cidr_warns() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    nodes["node-2"].files[PROXY_DROPIN] = (
        b'[Service]\nEnvironment="HTTPS_PROXY=http://10.30.0.2:3128" "NO_PROXY=localhost"\n')
    checks = run(plan, nodes).node("node-2")
    assert checks.get("NO_PROXY").status is CheckStatus.ok
    warn = checks.get("NO_PROXY on node")
    assert warn.status is CheckStatus.warn
    assert "10.1.0.0/16" in warn.detail


def test_mirror_check_uses_its_scheme() -> None:
    plan = make_plan(("mirror",))
    nodes = {n: healthy(n) for n in ADDRS}
    report = run(plan, nodes)
    assert report.node("node-1").get("mirror").status is CheckStatus.ok
    curl = nodes["node-1"].issued("curl")[0]
    assert curl[-1] == "http://10.30.0.3:5000/v2/"
    assert "--cacert" not in curl and "--noproxy" in curl


def test_low_disk_fails() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    node = nodes["node-1"]
    node.on("sh", "-c", DF_SCRIPT, answer=df(1_000_000, "/var"))
    check = run(plan, nodes).node("node-1").get("disk")
    assert check.status is CheckStatus.fail
    assert check.detail == "1.0 GiB free on /var, need 4.0 GiB"


def test_clock_skew_fails_and_a_node_without_snapd_fails_snapd() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    nodes["node-1"].on("date", answer=RunResult([], 0, f"{int(NOW) - 600}\n", ""))
    nodes["node-3"] = healthy("node-3", has_snapd=False)
    report = run(plan, nodes)
    clock = report.node("node-1").get("clock")
    assert clock.status is CheckStatus.fail and clock.detail.startswith("-600 s")
    snapd = report.node("node-3").get("snapd")
    assert snapd.status is CheckStatus.fail and "snapd" in snapd.fix
    hold = report.node("node-3").get("refresh hold")
    assert hold.status is CheckStatus.skip and "see the snapd check" in hold.detail


def test_snapd_installed_but_not_running_fails_fast() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    del nodes["node-1"].files[SNAPD_SOCKET]
    nodes["node-2"].on("snap", "version", answer=RunResult(
        [], 0, "snap    2.57.6\nsnapd   unavailable\nseries  -\n", ""))
    report = run(plan, nodes)
    one = report.node("node-1").get("snapd")
    assert one.status is CheckStatus.fail and "not running" in one.detail
    assert not nodes["node-1"].issued("snap", "version")
    two = report.node("node-2").get("snapd")
    assert two.status is CheckStatus.fail and "snapd unavailable" in two.detail
    assert "systemctl enable --now snapd.socket" in two.fix
    assert report.node("node-3").get("snapd").detail == "snapd 2.63"
