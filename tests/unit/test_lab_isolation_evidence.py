"""The lab's isolation evidence tells "proved" from "could not check" (fake Node).

The checks run the real commands in the lab (tests/e2e asserts their raw exit codes
and messages); here a recording Node answers with what getent, ip and curl print in
each situation, including a node where the tool is missing (`timeout` exits 127).
"""

from __future__ import annotations

import pytest

from airgap.nodes import RunResult
from lab import proof
from lab.report import FAILED, NOT_CHECKED, PROVED, IsolationRecord, Report, to_markdown
from lab.topology import LabSpec
from tests.support.fakes import FakeNode, Responder

SPEC = LabSpec(name="lab", nodes=1, slot=2)
UPSTREAM = next(m for m in SPEC.members if m.role == "upstream").services


def answer(_tool: list[str], code: int, out: str = "", err: str = "") -> Responder:
    """What the tool exits with and prints, for the argv the check really sent."""
    return lambda argv, _input: RunResult(list(argv), code, out, err)


def isolated_node() -> FakeNode:
    """What a node of the lab really answers (seen in e2e runs)."""
    node = FakeNode("node-1")
    node.on("getent", answer=answer(["getent"], 2))
    node.on("ip", answer=answer(["ip"], 2, err="RTNETLINK answers: Network is unreachable"))
    node.on("curl", "-sS", "-o", "/dev/null", "--max-time", answer=answer(
        ["curl"], 7, err=f"curl: (7) Failed to connect to {UPSTREAM} port 443: "
                        "Network is unreachable"))
    node.on("curl", "-sS", "-o", "/dev/null", "-w", answer=answer(["curl"], 0, out="401"))
    return node


def by_check(rows: list[IsolationRecord]) -> dict[str, IsolationRecord]:
    return {r.check.split(": ", 1)[1].split(" 1")[0]: r for r in rows}


def test_an_isolated_node_proves_every_check_with_its_raw_evidence() -> None:
    rows = proof.isolation_checks(isolated_node(), SPEC, "before deploy")
    assert [r.outcome for r in rows] == [PROVED] * 4
    assert all(r.ok for r in rows)
    got = by_check(rows)
    assert got["resolve ghcr.io"].exit_code == 2
    assert got["resolve ghcr.io"].command == "getent hosts ghcr.io"
    assert "Network is unreachable" in got["HTTPS to the upstream directly"].output


@pytest.mark.parametrize("tool", ["getent", "ip", "curl"])
def test_a_missing_tool_is_could_not_check_and_fails_the_proof(tool: str) -> None:
    node = isolated_node()
    # LXDNode runs every command under `timeout`, which exits 127 for a missing one.
    node.on(tool, answer=answer([tool], 127,
                                err=f"timeout: failed to run command '{tool}': No such file"))
    rows = proof.isolation_checks(node, SPEC, "before deploy")
    bad = [r for r in rows if r.command.startswith(tool)]
    assert bad and all(r.outcome == NOT_CHECKED and not r.ok for r in bad)
    assert all("not installed: this proves nothing" in r.evidence for r in bad)
    report = Report(lab="lab", runtime="stand-in", stand_in=True, started="now",
                    pulls=[], isolation=rows)
    assert not report.ok
    assert "| COULD NOT CHECK | 127 |" in to_markdown(report)


@pytest.mark.parametrize(("code", "outcome"), [
    (0, FAILED),       # resolved: the node can look up internet names
    (1, NOT_CHECKED),  # usage or database error: proves nothing
    (124, NOT_CHECKED),  # killed by timeout
])
def test_getent_exit_codes_are_read_exactly(code: int, outcome: str) -> None:
    node = isolated_node()
    node.on("getent", answer=answer(["getent"], code, out="140.82.1.1 ghcr.io" if code == 0
                                    else ""))
    row = proof.isolation_checks(node, SPEC, "after deploy")[0]
    assert (row.outcome, row.ok, row.exit_code) == (outcome, False, code)


def test_a_route_via_a_gateway_and_a_connect_fail_the_proof() -> None:
    node = isolated_node()
    node.on("ip", answer=answer(["ip"], 0, out=f"{UPSTREAM} via 10.9.0.1 dev eth0 src x"))
    node.on("curl", "-sS", "-o", "/dev/null", "--max-time",
            answer=answer(["curl"], 60, err="curl: (60) SSL certificate problem"))
    got = by_check(proof.isolation_checks(node, SPEC, "before deploy"))
    route = next(r for k, r in got.items() if k.startswith("route"))
    assert route.outcome == FAILED
    # exit 60: TLS was reached, so the direct path is open
    assert got["HTTPS to the upstream directly"].outcome == FAILED


def test_a_dead_upstream_makes_the_control_could_not_check() -> None:
    node = isolated_node()
    node.on("curl", "-sS", "-o", "/dev/null", "-w",
            answer=answer(["curl"], 56, out="000", err="curl: (56) CONNECT tunnel failed"))
    rows = proof.isolation_checks(node, SPEC, "before deploy")
    control = rows[-1]
    assert control.check.endswith("control: ghcr.io through the proxy")
    assert (control.outcome, control.ok) == (NOT_CHECKED, False)
