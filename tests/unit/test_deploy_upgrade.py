"""upgrade against recording fake Nodes: refusals before any change, images before any
refresh, control planes one at a time then workers in batches, stop and resume."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from airgap.deploy import BundleSnap
from airgap.deploy.site import read_history
from airgap.deploy.snapstep import SnapRow
from airgap.deploy.upgrade import check_versions, minor, upgrade
from airgap.errors import AirgapError
from airgap.nodes import Node
from airgap.plan import Plan, parse_plan
from tests.support.fakes import FakeCluster, FakeNode
from tests.unit.test_deploy_sequence import ADDRS, REVS, make_bundle

NEW = {**REVS, "k8s": "4000"}
ROLES = {"node-1": "control-plane", "node-2": "control-plane", "node-3": "worker",
         "node-4": "worker"}
ADDR = {**ADDRS, "node-4": "10.20.0.14"}


def plan_of(tmp_path: Path) -> Plan:
    nodes = [{"name": n, "address": ADDR[n], "role": r, "transport": "local"}
             for n, r in ROLES.items()]
    plan = parse_plan({"access": ["proxy"], "nodes": nodes,
                       "proxy": {"http": "http://10.20.0.2:3128"}},
                      source=str(tmp_path / "airgap.yaml"))
    return plan.model_copy(update={"base_dir": tmp_path})


def running_cluster(version: str = "1.36.0") -> dict[str, FakeNode]:
    """Four nodes deployed at revision 3195 (1.36.0), members of one cluster."""
    cluster = FakeCluster(members=dict(ADDR))
    nodes = {}
    for name in ROLES:
        node = FakeNode(name, cluster=cluster, address=ADDR[name], snap_revisions=dict(NEW),
                        versions={"k8s": version}, install_versions={"k8s": "1.36.1"})
        node.snaps.update(REVS)
        nodes[name] = node
    return nodes


@pytest.fixture(autouse=True)
def bundle_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BundleSnap, "version", lambda self: "1.36.1")


class Images:
    """An images step that records when it ran, and refuses if any k8s was refreshed."""

    def __init__(self, nodes: Mapping[str, FakeNode]) -> None:
        self.nodes, self.calls = nodes, 0
        self.refreshed_before: list[str] = []

    def __call__(self, _plan: Plan, nodes: Mapping[str, Node], _bundle: Path) -> list[str]:
        self.calls += 1
        self.refreshed_before = [n for n, node in self.nodes.items()
                                 if node.snaps["k8s"] != REVS["k8s"]]
        return [f"{len(nodes)} nodes have the new images"]


def run(plan: Plan, nodes: dict[str, FakeNode], bundle: Path, **kw: object):  # type: ignore[no-untyped-def]
    return upgrade(plan, dict(nodes), bundle, verify=lambda _p: None, sleep=lambda _s: None,
                   images_step=kw.pop("images_step", Images(nodes)), **kw)  # type: ignore[arg-type]


def shared_log(nodes: Mapping[str, FakeNode]) -> list[tuple[str, list[str]]]:
    """Every command of every node, in the order they were issued."""
    seq: list[tuple[str, list[str]]] = []
    for name, node in nodes.items():
        real = node.run

        def logged(argv, *, _real=real, _name=name, **kw):  # type: ignore[no-untyped-def]
            seq.append((_name, [str(x) for x in argv]))
            return _real(argv, **kw)

        node.run = logged  # type: ignore[method-assign]
    return seq


def first(seq: list[tuple[str, list[str]]], node: str | None, *prefix: str,
          after: int = -1) -> int:
    """The index of node's (None: any node's) first command with prefix after ``after``."""
    return next(i for i, (n, c) in enumerate(seq)
                if i > after and node in (None, n) and tuple(c[:len(prefix)]) == prefix)


def test_minor_versions_and_the_refusals() -> None:
    assert minor("v1.32.2") == (1, 32) and minor("1.36.1-rc.1") == (1, 36)
    row = SnapRow("k8s", "1.35.9", "90")
    check_versions({"a": row}, "1.36.1")  # one minor up: fine
    check_versions({"a": row}, "1.35.10")  # a patch: fine
    with pytest.raises(AirgapError, match="skips a minor version"):
        check_versions({"a": row}, "1.37.0")
    downgrade = re.escape("newer than the bundle's 1.35.1: upgrade does not")
    with pytest.raises(AirgapError, match=downgrade):
        check_versions({"a": row}, "1.35.1")
    with pytest.raises(AirgapError, match="a: k8s is not installed"):
        check_versions({"a": None}, "1.36.0")


def test_rollout_images_first_control_planes_one_at_a_time_then_workers(
        tmp_path: Path) -> None:
    plan, nodes = plan_of(tmp_path), running_cluster()
    images = Images(nodes)
    log = shared_log(nodes)
    report = run(plan, nodes, make_bundle(tmp_path / "b", revs=NEW), batch=2,
                 images_step=images, record_site=True)
    assert report.ok, report.error
    assert images.calls == 1 and images.refreshed_before == []
    ready = report.images_ready
    assert ready is not None and all(n.started is not None and n.started >= ready
                                     for n in report.nodes)
    by = {n.node: n for n in report.nodes}
    assert [by[n].order for n in ROLES] == [1, 2, 3, 4]
    assert all(by[n].status == "upgraded" and by[n].to_revision == "4000" for n in ROLES)
    assert by["node-1"].from_version == "1.36.0" and by["node-1"].to_version == "1.36.1"
    for node in nodes.values():
        assert node.snaps["k8s"] == "4000" and "k8s" in node.held
        assert len(node.issued("snap", "install")) == 1  # k8s only: snapd, base kept
        assert node.issued("snap", "ack")
    # node-1 refreshed and was checked healthy (its runtime, every member, the cluster's
    # node list) before node-2's refresh began; the two workers (batch 2) were refreshed
    # together, then checked.
    seq = log
    one = first(seq, "node-1", "snap", "install")
    checked = first(seq, None, "k8s", "kubectl", "get", "node", after=one)
    assert first(seq, "node-4", "systemctl", "is-active", after=one) < checked
    assert checked < first(seq, "node-2", "snap", "install")
    three, four = first(seq, "node-3", "snap", "install"), first(seq, "node-4", "snap", "install")
    between = [c for _, c in seq[three:four] if c[:2] == ["k8s", "kubectl"]]
    assert three < four and not between
    h = read_history(plan)
    assert {r.manifest_sha256 for r in h.nodes.values()} == {h.events[-1].manifest_sha256}
    assert [e.node for e in h.events] == list(ROLES)


def test_a_failed_node_stops_the_rollout_and_a_rerun_continues(tmp_path: Path) -> None:
    plan, nodes = plan_of(tmp_path), running_cluster()
    bundle = make_bundle(tmp_path / "b", revs=NEW)
    nodes["node-3"].fail_on("snap", "install", stderr="error: cannot communicate with server")
    report = run(plan, nodes, bundle)
    assert not report.ok and report.stopped_at == "node-3"
    status = {n.node: n.status for n in report.nodes}
    assert status == {"node-1": "upgraded", "node-2": "upgraded", "node-3": "failed",
                      "node-4": "not run"}
    err = report.error
    assert err is not None and "node-3: the refresh failed" in err.brief
    assert "node-4 not refreshed" in err.brief
    assert "run upgrade again" in (err.resolution or "")
    assert "snap revert k8s" in (err.resolution or "")
    assert nodes["node-4"].snaps["k8s"] == REVS["k8s"] and not nodes["node-4"].issued(
        "snap", "install")

    for node in nodes.values():
        node.reset_log()
    again = run(plan, nodes, bundle)
    assert again.ok, again.error
    status = {n.node: n.status for n in again.nodes}
    assert status == {"node-1": "already", "node-2": "already", "node-3": "upgraded",
                      "node-4": "upgraded"}
    assert not nodes["node-1"].issued("snap", "install")


def test_a_node_that_does_not_come_back_healthy_stops_there(tmp_path: Path) -> None:
    plan, nodes = plan_of(tmp_path), running_cluster()
    ticks = iter(range(0, 10**6, 100))
    node = nodes["node-1"]
    node.on("ctr", "version", answer=lambda a, _i: node.run(["false"], check=False))
    report = run(plan, nodes, make_bundle(tmp_path / "b", revs=NEW), ready_timeout=300,
                 clock=lambda: float(next(ticks)))
    assert report.stopped_at == "node-1"
    assert report.error is not None and "not healthy 300 s after the refresh" in (
        report.node("node-1").detail)
    assert "the runtime does not answer" in report.node("node-1").detail
    assert all(nodes[n].snaps["k8s"] == REVS["k8s"] for n in ("node-2", "node-3", "node-4"))


def test_a_minor_skip_is_refused_before_anything_changes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BundleSnap, "version", lambda self: "1.38.0")
    plan, nodes = plan_of(tmp_path), running_cluster()
    images = Images(nodes)
    with pytest.raises(AirgapError, match="skips a minor version"):
        run(plan, nodes, make_bundle(tmp_path / "b", revs=NEW), images_step=images)
    assert images.calls == 0
    for node in nodes.values():
        assert all(c[:2] == ["snap", "list"] for c in node.commands), node.commands


def test_an_images_failure_refreshes_nothing(tmp_path: Path) -> None:
    plan, nodes = plan_of(tmp_path), running_cluster()

    def no_images(_p: Plan, _n: Mapping[str, Node], _b: Path) -> list[str]:
        raise AirgapError("node-2: cannot pull ghcr.io/x/new:1 through the mirror: 404")

    report = run(plan, nodes, make_bundle(tmp_path / "b", revs=NEW), images_step=no_images)
    assert report.error is not None and "cannot pull" in report.error.brief
    assert not any(n.issued("snap", "install") for n in nodes.values())
