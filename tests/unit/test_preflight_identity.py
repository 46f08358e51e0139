"""Each node holds its plan address (from real `ip -o addr show` output, IPv4 and IPv6),
a hostname other than the plan name is fine (deploy passes --name), and two plan names
answered by one machine fail on both."""

from __future__ import annotations

import socket
import subprocess

from airgap.nodes import RunResult
from airgap.plan import Node as PlanNode
from airgap.preflight import IDENTITY_SCRIPT, CheckStatus, parse_ip_addr
from airgap.preflight.identity import check_identity, check_one_machine_each, parse_identity
from tests.unit.test_preflight_checks import ADDRS, IP_ADDR, healthy, identity, make_plan, run

MID = "3d1219c7c4c5404aaa1f6d2a48adfda4"


def spec(address: str, name: str = "node-1") -> PlanNode:
    return PlanNode(name=name, address=address, role="worker", transport="local")


def node_answering(address: str, hostname: str = "node-1"):  # type: ignore[no-untyped-def]
    node = healthy("node-1")
    node.on("sh", "-c", IDENTITY_SCRIPT, answer=identity(address, hostname, MID))
    return node


def test_real_ip_output_gives_ipv4_and_ipv6_per_interface() -> None:
    assert parse_ip_addr(IP_ADDR) == [
        ("lo", "127.0.0.1"), ("lo", "::1"), ("eth0", "192.0.2.2"), ("eth0", "fd00::2"),
        ("eth0", "fe80::fc:ff:fe00:1")]


def test_the_real_script_on_this_machine() -> None:
    res = subprocess.run(["sh", "-c", IDENTITY_SCRIPT], capture_output=True, text=True,
                         check=True)
    ident = parse_identity(res.stdout)
    assert ident.hostname == socket.gethostname()
    assert ("lo", "127.0.0.1") in ident.addresses
    assert "127.0.0.1" not in ident.own


def test_plan_address_present_ipv4_and_ipv6_in_any_spelling() -> None:
    checks, ident = check_identity(node_answering("10.30.0.11"), spec("10.30.0.11"))
    assert ident is not None and ident.machine_id == MID
    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("plan address", CheckStatus.ok, "10.30.0.11 on eth0"),
        ("hostname", CheckStatus.ok, "node-1 (the plan name)")]
    six, _ = check_identity(node_answering("10.30.0.11"), spec("fd00:0:0::2"))
    assert six[0].detail == "fd00::2 on eth0"


def test_an_address_that_is_not_the_nodes_fails_naming_what_it_has() -> None:
    checks, _ = check_identity(node_answering("10.30.0.11"), spec("10.30.0.111"))
    assert checks[0].status is CheckStatus.fail
    assert checks[0].detail == ("10.30.0.111 is not on this machine; it has "
                                "10.30.0.11 (eth0), fd00::2 (eth0)")
    assert "nodes[node-1].address" in checks[0].fix


def test_a_hostname_other_than_the_plan_name_is_ok_deploy_passes_name() -> None:
    checks, _ = check_identity(node_answering("10.30.0.11", "ip-10-30-0-11"),
                               spec("10.30.0.11"))
    assert checks[1].status is CheckStatus.ok
    assert checks[1].detail == ("ip-10-30-0-11; deploy joins it as node-1 (--name node-1: "
                                "the join token is made for that name)")


def test_ip_failing_fails_the_check() -> None:
    node = healthy("node-1")
    node.on("sh", "-c", IDENTITY_SCRIPT,
            answer=RunResult([], 127, "hostname node-1\nmachine-id \n", "sh: ip: not found"))
    checks, ident = check_identity(node, spec("10.30.0.11"))
    assert ident is None and checks[0].status is CheckStatus.fail
    assert "sh: ip: not found" in checks[0].detail


def test_same_machine_id_or_same_hostname_and_addresses_is_one_machine() -> None:
    a = parse_identity(identity("10.30.0.11", "a", MID).stdout)
    b = parse_identity(identity("10.30.0.12", "b", MID).stdout)
    c = parse_identity(identity("10.30.0.13", "c", "").stdout)
    d = parse_identity(identity("10.30.0.13", "c", "").stdout)
    out = check_one_machine_each({"node-1": a, "node-2": b, "node-3": c, "node-4": d})
    assert out["node-1"].status is CheckStatus.fail
    assert out["node-1"].detail == ("node-1 and node-2 answer with the same machine-id "
                                    "3d1219c7c4c5: the plan points two names at one machine")
    assert out["node-3"].detail == ("node-3 and node-4 answer with the same hostname c and "
                                    "addresses: the plan points two names at one machine")
    assert "systemd-machine-id-setup" in out["node-4"].fix
    ok = check_one_machine_each({"node-1": a, "node-3": c})
    assert [x.status for x in ok.values()] == [CheckStatus.ok, CheckStatus.ok]
    assert check_one_machine_each({"node-1": a}) == {}


def test_preflight_a_plan_pointing_two_names_at_one_machine_fails_both() -> None:
    """node-3's plan address is node-2's machine's: its transport reaches node-2."""
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    twin = identity(ADDRS["node-2"], "node-2", MID)
    nodes["node-2"].on("sh", "-c", IDENTITY_SCRIPT, answer=twin)
    nodes["node-3"].on("sh", "-c", IDENTITY_SCRIPT, answer=twin)
    report = run(plan, nodes)
    assert report.node("node-3").get("plan address").status is CheckStatus.fail
    for name in ("node-2", "node-3"):
        assert report.node(name).get("one machine").status is CheckStatus.fail
    assert report.node("node-1").get("one machine").status is CheckStatus.ok
