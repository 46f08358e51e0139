"""Namespaces are real hosts: reachable on their own network, isolated from others,
and gone (with their subnet, links and blackhole route) after cleanup."""

from __future__ import annotations

import ipaddress
import os
import subprocess

import pytest

from tests.support.netns import STATE_DIR, TEST_RANGE, NetnsLab, netns_lab

pytestmark = pytest.mark.integration


def _ping(lab: NetnsLab, src: str, dst: str) -> subprocess.CompletedProcess[str]:
    return lab.run(src, ["busybox", "ping", "-c", "1", "-W", "1", dst], check=False)


def test_isolation_between_networks(netns_factory: NetnsLab) -> None:
    lab = netns_factory
    lab.network("airgap")
    lab.network("upstream", host=True)
    client = lab("client", networks=["airgap"])
    proxy = lab("proxy", networks=["airgap", "upstream"])
    upstream = lab("upstream", networks=["upstream"])
    for ns in (client, proxy, upstream):
        assert ipaddress.ip_address(ns.address) in TEST_RANGE
        assert "default" not in ns.run(["ip", "route"]).stdout
        assert "127.0.0.1" in ns.run(["ip", "-4", "addr", "show", "lo"]).stdout
    assert _ping(lab, "client", proxy.addresses["airgap"]).returncode == 0
    assert _ping(lab, "proxy", upstream.address).returncode == 0
    # The air-gapped client has no route to the upstream network at all.
    blocked = _ping(lab, "client", upstream.address)
    assert blocked.returncode != 0
    assert "unreachable" in (blocked.stdout + blocked.stderr).lower()
    # The proxy does not route between its two networks.
    assert proxy.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "0"
    # The root namespace reaches the network it is attached to, not the other one,
    # and a test address with nothing behind it is blackholed, never routed out.
    assert lab.networks["upstream"].host_address is not None
    root = subprocess.run(["ip", "route", "get", client.address], capture_output=True, text=True)
    assert "blackhole" in root.stdout or root.returncode != 0
    assert "blackhole" in subprocess.run(
        ["ip", "route", "show", "type", "blackhole"], capture_output=True, text=True
    ).stdout


def test_cleanup_removes_everything_even_after_failure() -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), netns_lab() as lab:
        lab.network("n", host=True)
        names = [lab("a", ["n"]).name, lab("b", ["n"]).name, lab.switch]
        raise RuntimeError("boom")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in names:
        assert name not in listed
    ours = f"agh{os.getpid() % 10**7}"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert ours not in links
    users = list((STATE_DIR / "users").iterdir())
    if not users:  # no other test process holds the range: the route is gone too
        assert "blackhole" not in subprocess.run(
            ["ip", "route", "show", "type", "blackhole", str(TEST_RANGE)],
            capture_output=True, text=True).stdout


def test_two_labs_get_disjoint_subnets() -> None:
    with netns_lab() as one, netns_lab() as two:
        a, b = one.network("n"), two.network("n")
        assert not a.subnet.overlaps(b.subnet)
        x, y = one("x", ["n"]), two("y", ["n"])
        assert _ping(one, "x", y.address).returncode != 0
        assert x.name != y.name
