"""Clock skew between nodes, not only against this machine. An LXD container shares the
host's clock, so the lab (and these tests) simulate a skew at the check's input:
``preflight(clock_skew={node: seconds})`` adds it to the time the node reports."""

from __future__ import annotations

import time

from airgap.nodes import LocalNode, RunResult
from airgap.preflight import CheckStatus, check_clock, check_clock_between
from tests.unit.test_preflight_checks import ADDRS, NOW, healthy, make_plan, run


def test_two_nodes_each_within_tolerance_of_here_but_apart_fail_naming_each_other() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    report = run(plan, nodes, clock_skew={"node-1": 100, "node-3": -100})
    one, two, three = (report.node(n) for n in ADDRS)
    assert one.get("clock").status is CheckStatus.ok  # 100 s from here: within 120 s
    assert one.get("clock").detail == (
        "+100 s from this machine (simulated: +100 s added to the node's time), "
        "NTP synchronised: yes")
    between = one.get("clock between nodes")
    assert between.status is CheckStatus.fail
    assert between.detail == "200 s ahead of node-3 (tolerance 120 s)"
    assert three.get("clock between nodes").detail == "200 s behind node-1 (tolerance 120 s)"
    assert "node-3 and node-1" in three.get("clock between nodes").fix
    assert two.get("clock between nodes").status is CheckStatus.ok
    assert two.get("clock between nodes").detail == "spread 200 s across 3 nodes (tolerance 120 s)"


def test_spread_within_tolerance_passes_and_one_node_has_no_spread() -> None:
    out = check_clock_between({"a": 1.5, "b": -3.0, "c": 0.0}, 120)
    assert {c.status for c in out.values()} == {CheckStatus.ok}
    assert out["a"].detail == "spread 4 s across 3 nodes (tolerance 120 s)"
    assert check_clock_between({"a": 5000.0}, 120) == {}


def test_a_node_whose_time_cannot_be_read_is_left_out_of_the_spread() -> None:
    plan = make_plan()
    nodes = {n: healthy(n) for n in ADDRS}
    nodes["node-2"].on("date", answer=RunResult([], 1, "", "date: not found"))
    report = run(plan, nodes)
    assert report.node("node-2").get("clock").status is CheckStatus.fail
    assert not report.node("node-2").named("clock between")
    assert report.node("node-1").get("clock between nodes").detail.endswith(
        "across 2 nodes (tolerance 120 s)")


def test_real_date_with_nanoseconds_and_busybox_whole_seconds() -> None:
    checks, reading = check_clock(LocalNode("local"), time.time, 120)
    assert reading is not None and abs(reading.offset) < 2, reading
    assert checks[0].status in (CheckStatus.ok, CheckStatus.warn)
    node = healthy("node-1")
    node.on("date", answer=RunResult([], 0, f"{int(NOW) + 7}.%N\n", ""))  # no %N support
    _, whole = check_clock(node, lambda: NOW, 120)
    assert whole is not None and whole.offset == 7
    node.on("date", answer=RunResult([], 0, f"{int(NOW)}.250000000\n", ""))
    _, frac = check_clock(node, lambda: NOW, 120, skew=-30)
    assert frac is not None and frac.offset == -29.75 and frac.simulated == -30
