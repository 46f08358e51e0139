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
    IDENTITY_SCRIPT,
    PORTS_ALL,
    PORTS_CONTROL_PLANE,
    SNAPD_SOCKET,
    CheckStatus,
    dropin_no_proxy,
    no_proxy_gaps,
    preflight,
)
from airgap.preflight.network import LISTEN_SH, STOP_SH
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
    """PROBE_PY's answer: every target open (a listener behind it) unless ``blocked``."""
    def answer(argv: list[str], _input: bytes | None) -> RunResult:
        targets = argv[4:]
        out = {t: (blocked or {}).get(t, "open") for t in targets}
        return RunResult(argv, 0, json.dumps(out), "")
    return answer


def listen_answer(states: dict[int, str] | None = None):  # type: ignore[no-untyped-def]
    """LISTEN_SH's output as the real script prints it (tests/unit/
    test_preflight_ports_listen.py runs it): every port bound unless ``states`` says."""
    def answer(argv: list[str], _input: bytes | None) -> RunResult:
        ports = argv[7:]
        cut = ports.index("--udp")
        tcp = {p: (states or {}).get(int(p), "bound") for p in ports[:cut]}
        udp = {p: (states or {}).get(int(p), "bound") for p in ports[cut + 1:]}
        line = json.dumps({"pid": 4243, "tcp": tcp, "udp": udp})
        return RunResult(argv, 0, f"started 4242\n{line}\n", "")
    return answer


# `ip -o addr show` on a Debian 12 machine (iproute2 6.1.0), 192.0.2.2 replaced per node.
IP_ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever
4: eth0    inet6 fd00::2/64 scope global nodad \\       valid_lft forever preferred_lft forever
4: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever preferred_lft forever
"""  # noqa: E501


def identity(address: str, hostname: str, machine_id: str) -> RunResult:
    return RunResult([], 0, f"hostname {hostname}\nmachine-id {machine_id}\n"
                     + IP_ADDR.replace("192.0.2.2", address), "")


def df(avail_kib: int, mount: str):  # type: ignore[no-untyped-def]
    """DF_SCRIPT's output with every path on one filesystem (format as GNU df 9.1 -Pk)."""
    def answer(argv: list[str], _input: bytes | None) -> RunResult:
        out = "".join(
            f"path {p} /var\nFilesystem     1024-blocks     Used Available Capacity Mounted on\n"
            f"/dev/sda1 100000000 1000000 {avail_kib} 2% {mount}\n" for p in argv[4:])
        return RunResult(argv, 0, out, "")
    return answer


def healthy(name: str, **kw: object) -> FakeNode:
    node = FakeNode(name, cluster=FakeCluster(), address=ADDRS[name],
                    default_route="default dev eth0 scope link", **kw)  # type: ignore[arg-type]
    node.files[NETPLAN_FILE] = netplan_route("eth0").encode()
    node.files[SNAPD_SOCKET] = b""
    node.on("sh", "-c", LISTEN_SH, answer=listen_answer())
    node.on("sh", "-c", STOP_SH, answer=RunResult([], 0, "", ""))
    node.on("sh", "-c", IDENTITY_SCRIPT,
            answer=identity(ADDRS[name], name, f"{abs(hash(name)):032x}"[:32]))
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
    [probe] = nodes["node-2"].issued("python3")  # one batched exec
    targets = probe[4:]
    # node-2 probes node-1 (control plane: all + cp ports) and node-3 (worker ports),
    # and each one's 8472/udp.
    assert targets == [f"10.30.0.11:{p}" for p in PORTS_ALL + PORTS_CONTROL_PLANE] + [
        "10.30.0.11:8472/udp"] + [f"10.30.0.13:{p}" for p in PORTS_ALL] + [
        "10.30.0.13:8472/udp"]
    # The listener binds, on node-1's plan address, the ports the others must reach on it.
    [listen] = nodes["node-1"].issued("sh", "-c", LISTEN_SH)
    assert listen[6:] == ["10.30.0.11", *map(str, PORTS_ALL + PORTS_CONTROL_PLANE),
                          "--udp", "8472"]
    assert nodes["node-1"].issued("sh", "-c", STOP_SH) == [
        ["sh", "-c", STOP_SH, "stop", "4242", "4243"]]
    checks = report.node("node-2")
    assert checks.get("ports -> node-1").detail == "10 TCP ports open (a listener on node-1)"
    assert checks.get("8472/udp -> node-3").detail == "echoed by the listener on node-3"
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
        {"10.30.0.11:6443": "timeout", "10.30.0.11:2379": "EHOSTUNREACH",
         "10.30.0.11:10250": "refused", "10.30.0.11:8472/udp": "timeout"}))
    report = run(plan, nodes)
    check = report.node("node-2").get("ports -> node-1")
    assert check.status is CheckStatus.fail
    # The listener on node-1 was bound: "refused" is a REJECT rule or a reset, not "open".
    assert check.detail == (
        "blocked: 6443 (timeout: dropped), 10250 (refused: a REJECT rule or a TCP reset), "
        "2379 (EHOSTUNREACH: no route, or a REJECT with host-prohibited)")
    assert "allow TCP 6443,10250,2379 from 10.30.0.12 to 10.30.0.11" in check.fix
    assert "REJECT rule or a reset answered" in check.fix
    udp = report.node("node-2").get("8472/udp -> node-1")
    assert udp.status is CheckStatus.fail and udp.detail == "blocked: no echo: dropped"
    assert report.node("node-2").get("ports -> node-3").status is CheckStatus.ok


def test_bash_fallback_when_no_python() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    node = nodes["node-3"]
    node.missing_commands.add("python3")
    # LISTEN_SH itself looks for python3 and says so (one exec, no listener).
    node.on("sh", "-c", LISTEN_SH, answer=RunResult([], 0, "no-python3\n", ""))
    node.on("bash", answer=lambda a, _i: RunResult(a, 0, "".join(
        f"{t} {'timeout' if t.endswith(':10250') else 'open'}\n" for t in a[5:]), ""))
    report = run(plan, nodes)
    assert not node.issued("python3")
    assert not node.issued("sh", "-c", STOP_SH)  # nothing started, nothing to stop
    [bash] = node.issued("bash")
    assert bash[4] == "3"  # time-out in whole seconds
    assert not [t for t in bash[5:] if t.endswith("/udp")]  # bash probes TCP only
    check = report.node("node-3").get("ports -> node-2")
    assert check.detail == "blocked: 10250 (timeout: dropped)"
    udp = report.node("node-3").get("8472/udp -> node-1")
    assert udp.status is CheckStatus.warn and "no python3 on this node" in udp.detail
    # The others reach node-3, which runs no listener: a refused port proves nothing there.
    nodes["node-1"].on("python3", answer=probe_answer(
        {"10.30.0.13:6443": "refused", "10.30.0.13:8472/udp": "timeout"}))
    again = run(plan, nodes).node("node-1")
    to3 = again.get("ports -> node-3")
    assert to3.status is CheckStatus.warn
    assert to3.detail.startswith("not checked: 6443 (no listener on node-3 (no python3))")
    assert "not checked: no listener on node-3 (no python3)" in again.get(
        "8472/udp -> node-3").detail


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
    node.on("sh", "-c", DF_SCRIPT, answer=df(1_048_576, "/var"))
    check = run(plan, nodes).node("node-1").get("disk /var")
    assert check.status is CheckStatus.fail
    # No --bundle: estimates for the snaps and the images, on one filesystem here.
    assert check.detail == (
        "1.0 GiB free on /var (/dev/sda1), need 4.0 GiB: /var/lib/snapd (snaps (estimate: "
        "no --bundle)), /var/snap/k8s/common (images (estimate: no --bundle)), "
        "2.0 GiB headroom")
    assert check.fix.startswith("free 3.0 GiB on /var")


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
