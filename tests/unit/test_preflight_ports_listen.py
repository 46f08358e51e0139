"""The real listener and probe scripts, run on this machine on 127.0.0.1 (loopback only,
in subprocesses: the unit suite's socket guard watches this process, not its children).

A port behind the listener answers "open"; a closed port is refused (what a REJECT rule
or a firewall's reset answers: preflight fails it); a full accept queue drops the SYN
(what a DROP rule does: "timeout"); 8472/udp is echoed by the listener, refused by a
closed port (ICMP port unreachable, as a REJECT answers) and silent where a socket takes
the datagram without answering (as a DROP is). The listener reports a port already in
use, is stopped by its pids, and ends by itself at its lifetime.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airgap.nodes import LocalNode
from airgap.plan import Node as PlanNode
from airgap.plan import parse_plan
from airgap.preflight.network import (
    LISTEN_PY,
    LISTEN_SH,
    NO_PYTHON,
    Listener,
    check_ports,
    listening,
    parse_listener,
    probe_ports,
    start_listener,
    stop_listener,
)
from airgap.preflight.report import CheckStatus

# Holds loopback sockets for a test, in a subprocess: "tcp" listens (a port in use),
# "full" listens with a full accept queue (its SYNs are dropped), "udp" is bound and
# never reads, "free" is a port that was free a moment ago. Prints the ports as JSON.
HOLD_PY = r"""
import json, socket, sys
out, keep = {}, []
for kind in sys.argv[1:]:
    typ = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, typ)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    if kind == "free":
        s.close()
    else:
        keep.append(s)
        if kind == "tcp":
            s.listen(16)
        if kind == "full":
            s.listen(0)
            for _ in range(3):  # fill the accept queue; later SYNs are dropped
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                keep.append(c)
    out.setdefault(kind, []).append(port)
print(json.dumps(out), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held() -> Iterator[dict[str, list[int]]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_PY, "tcp", "full", "udp", "free", "free", "free", "free"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_listener_binds_probe_tells_open_refused_dropped_and_udp_echo(
        held: dict[str, list[int]]) -> None:
    node = LocalNode("local")
    free1, free2, free3, free4 = held["free"]
    in_use, full, mute = held["tcp"][0], held["full"][0], held["udp"][0]
    argv = ["sh", "-c", LISTEN_SH, "listen", LISTEN_PY, "30", "127.0.0.1",
            str(free1), str(in_use), "--udp", str(free2)]
    res = node.run(argv)
    ls = parse_listener("local", "127.0.0.1", res.stdout)
    try:
        assert ls.error == ""
        assert ls.tcp == {free1: "bound", in_use: "in use"}
        assert ls.udp == {free2: "bound"}
        assert len(ls.pids) == 2  # timeout(1)'s and the listener's own
        got = probe_ports(node, [
            f"127.0.0.1:{free1}", f"127.0.0.1:{in_use}", f"127.0.0.1:{free3}",
            f"127.0.0.1:{full}", f"127.0.0.1:{free2}/udp", f"127.0.0.1:{free4}/udp",
            f"127.0.0.1:{mute}/udp"], timeout=1.0, python=True)
        assert got == {
            f"127.0.0.1:{free1}": "open",  # the listener
            f"127.0.0.1:{in_use}": "open",  # served by what already listens
            f"127.0.0.1:{free3}": "refused",  # a reset: what a REJECT rule answers
            f"127.0.0.1:{full}": "timeout",  # the SYN dropped
            f"127.0.0.1:{free2}/udp": "open",  # echoed
            f"127.0.0.1:{free4}/udp": "refused",  # ICMP port unreachable
            f"127.0.0.1:{mute}/udp": "timeout",  # taken, never answered
        }
    finally:
        stop_listener(node, ls)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in ls.pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in ls.pids)
    assert probe_ports(node, [f"127.0.0.1:{free1}"], timeout=1.0, python=True) == {
        f"127.0.0.1:{free1}": "refused"}


def test_listener_ends_by_itself_at_its_lifetime(held: dict[str, list[int]]) -> None:
    node = LocalNode("local")
    port = held["free"][0]
    spec = PlanNode(name="node-1", address="127.0.0.1", role="worker", transport="local")
    ls = start_listener(node, spec, lifetime=1, udp=())
    try:
        assert ls.tcp[6443] in ("bound", "in use")  # the worker ports, on 127.0.0.1
        res = node.run(["sh", "-c", LISTEN_SH, "listen", LISTEN_PY, "1", "127.0.0.1",
                        str(port), "--udp"])
        own = parse_listener("local", "127.0.0.1", res.stdout)
        assert own.tcp == {port: "bound"}
        deadline = time.monotonic() + 6
        while any(alive(p) for p in own.pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(p) for p in own.pids)
        assert probe_ports(node, [f"127.0.0.1:{port}"], timeout=1.0, python=True) == {
            f"127.0.0.1:{port}": "refused"}
    finally:
        stop_listener(node, ls)


def test_listener_output_without_python_or_a_report() -> None:
    assert parse_listener("n", "10.0.0.1", "no-python3\n").error == NO_PYTHON
    assert not parse_listener("n", "10.0.0.1", "no-python3\n").python
    broken = parse_listener("n", "10.0.0.1", "started 77\nTraceback...\nOSError: boom\n")
    assert broken.error == "did not start: OSError: boom" and broken.pids == (77,)
    assert broken.python


def test_check_ports_end_to_end_on_loopback_addresses() -> None:
    """Two plan nodes on two loopback addresses of this machine: real listeners, one real
    probe per node; nothing blocks, so every port is open and 8472/udp echoes."""
    plan = parse_plan({"access": ["proxy"], "proxy": {"https": "http://10.30.0.2:3128"},
                       "nodes": [
                           {"name": "node-1", "address": "127.0.0.21", "role": "worker",
                            "transport": "local"},
                           {"name": "node-2", "address": "127.0.0.22",
                            "role": "control-plane",
                            "transport": "local"}]}, source="airgap.yaml")
    nodes = {"node-1": LocalNode("node-1"), "node-2": LocalNode("node-2")}
    with listening(nodes, plan.nodes) as listeners:
        assert all(isinstance(v, Listener) and not v.error for v in listeners.values())
        checks = check_ports(nodes["node-1"], plan, plan.nodes[0], listeners, timeout=1.0)
    assert [(c.name, c.status) for c in checks] == [
        ("ports -> node-2", CheckStatus.ok), ("8472/udp -> node-2", CheckStatus.ok)]
    assert checks[0].detail.startswith("10 TCP ports open (a listener on node-2)")
    # Stopped: the same probe is refused now, and preflight would fail it as a REJECT.
    after = check_ports(nodes["node-1"], plan, plan.nodes[0], listeners, timeout=1.0)
    assert after[0].status is CheckStatus.fail
    assert "refused: a REJECT rule or a TCP reset" in after[0].detail
