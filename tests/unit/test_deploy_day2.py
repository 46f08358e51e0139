"""Day 2 in deploy: a running cluster's revision is never changed, a node added later
joins only at the cluster's revision, and the site's history records each node's bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airgap.deploy import StepStatus
from airgap.deploy.site import (
    HISTORY,
    manifest_copy,
    manifest_digest,
    read_history,
    record,
    site_dir,
)
from airgap.errors import AirgapError
from airgap.plan import parse_plan
from tests.unit.test_deploy_sequence import REVS, fakes, make_bundle, make_plan, run_deploy

NEWER = {**REVS, "k8s": "4000"}


def plan_in(tmp_path: Path, roles: tuple[str, ...] = ("control-plane", "worker", "worker")):  # type: ignore[no-untyped-def]
    """A plan whose source is a file in tmp_path, so the site's history goes there."""
    base = make_plan(["proxy"], roles=roles)
    data = base.model_dump(mode="json", exclude_none=True)
    plan = parse_plan(data, source=str(tmp_path / "airgap.yaml"))
    return plan.model_copy(update={"base_dir": tmp_path})


def test_deploy_refuses_to_refresh_a_running_cluster_and_names_upgrade(tmp_path: Path) -> None:
    plan = make_plan(["proxy"])
    first = make_bundle(tmp_path / "a")
    _, nodes = fakes(plan)
    report, _ = run_deploy(plan, nodes, first)
    assert report.ok, report
    for n in nodes.values():
        n.snap_revisions["k8s"] = NEWER["k8s"]
        n.reset_log()
    report, _ = run_deploy(plan, nodes, make_bundle(tmp_path / "b", revs=NEWER))
    for name, node in nodes.items():
        nr = report.node(name)
        assert nr.status_of("snaps") is StepStatus.failed, nr.steps
        err = nr.errors[0]
        assert "deploy does not change a running cluster's revision" in err.brief
        assert f"revision {REVS['k8s']} -> 4000" in err.brief
        assert "invoke upgrade --plan" in (err.resolution or "")
        assert not node.issued("snap", "install") and node.snaps["k8s"] == REVS["k8s"]


def test_a_node_not_in_a_cluster_is_still_refreshed_by_deploy(tmp_path: Path) -> None:
    plan = make_plan(["proxy"], roles=("control-plane",))
    _, nodes = fakes(plan)
    node = nodes["node-1"]
    node.snaps.update({"snapd": "1", "core22": "1", "k8s": "1000"})  # installed, no cluster
    report, _ = run_deploy(plan, nodes, make_bundle(tmp_path / "b"))
    assert report.ok, report
    assert node.snaps["k8s"] == REVS["k8s"]


def test_add_node_later_joins_with_a_token_from_the_running_cluster(tmp_path: Path) -> None:
    plan = plan_in(tmp_path)
    bundle = make_bundle(tmp_path / "a")
    cluster, nodes = fakes(plan)
    first_two = {n: nodes[n] for n in ("node-1", "node-2")}
    report, _ = run_deploy(plan, first_two, bundle, record_site=True)
    assert report.ok and set(cluster.members) == {"node-1", "node-2"}
    for n in nodes.values():
        n.reset_log()

    report, _ = run_deploy(plan, dict(nodes), bundle, only=["node-3"], record_site=True)
    assert report.ok, report
    assert [n.name for n in report.nodes] == ["node-3"]
    boot = nodes["node-1"]
    assert ["k8s", "get-join-token", "node-3", "--worker"] in boot.commands
    assert not boot.issued("k8s", "bootstrap") and not boot.issued("snap", "install")
    assert not nodes["node-2"].commands  # the other member is not touched
    assert set(cluster.members) == set(nodes)
    history = read_history(plan)
    assert history.nodes["node-3"].task == "add-node"
    assert history.nodes["node-3"].manifest_sha256 == manifest_digest(bundle)
    assert history.nodes["node-3"].k8s_revision == REVS["k8s"]


def test_add_node_with_another_revision_is_refused_before_any_node_is_touched(
        tmp_path: Path) -> None:
    plan = plan_in(tmp_path)
    bundle = make_bundle(tmp_path / "a")
    _, nodes = fakes(plan)
    report, _ = run_deploy(plan, {n: nodes[n] for n in ("node-1", "node-2")}, bundle,
                           record_site=True)
    assert report.ok
    for n in nodes.values():
        n.reset_log()
    newer = make_bundle(tmp_path / "b", revs=NEWER)
    with pytest.raises(AirgapError) as err:
        run_deploy(plan, dict(nodes), newer, only=["node-3"])
    msg = err.value.brief
    assert "(revision 4000)" in msg and f"(revision {REVS['k8s']})" in msg, msg
    assert manifest_digest(bundle) in msg  # the bundle the cluster runs, from the history
    assert "node-3 would join with another version" in msg
    # node-3 was only asked whether it is a member already; nothing was sent or run.
    assert nodes["node-3"].commands == [["k8s", "local-node-status"]]
    assert nodes["node-3"].written == []


def test_history_keeps_each_nodes_bundle_and_a_copy_of_its_manifest(tmp_path: Path) -> None:
    plan = plan_in(tmp_path)
    a, b = make_bundle(tmp_path / "a"), make_bundle(tmp_path / "b", revs=NEWER)
    record(plan, a, ["node-1", "node-2"], version="1.36.0", revision="3195", task="deploy")
    record(plan, b, ["node-1"], version="1.36.1", revision="4000", task="upgrade")
    h = read_history(plan)
    assert h.nodes["node-1"].manifest_sha256 == manifest_digest(b)
    assert h.nodes["node-2"].manifest_sha256 == manifest_digest(a)
    assert [e.node for e in h.events] == ["node-1", "node-2", "node-1"]
    last = h.last()
    assert last is not None and last.manifest_sha256 == manifest_digest(b)
    copy = manifest_copy(plan, manifest_digest(b))
    assert copy is not None and copy.read_bytes() == (b / "manifest.json").read_bytes()
    assert site_dir(plan) == tmp_path / "airgap.site"


def test_a_damaged_history_is_named_with_the_fix(tmp_path: Path) -> None:
    plan = plan_in(tmp_path)
    path = site_dir(plan) / HISTORY
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(AirgapError) as err:
        read_history(plan)
    assert str(path) in err.value.brief and "not a k8s-airgap site history" in err.value.brief
    path.write_text("{")
    with pytest.raises(AirgapError) as err:
        read_history(plan)
    assert "cannot read the site's history" in err.value.brief


def test_status_shows_each_nodes_bundle_and_the_manifest_to_carry_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    monkeypatch.setenv("COLUMNS", "250")  # rich's width: every column whole
    from airgap.show.day2 import run_status

    plan = plan_in(tmp_path)
    (tmp_path / "airgap.yaml").write_text(json.dumps(
        plan.model_dump(mode="json", exclude_none=True)))
    a = make_bundle(tmp_path / "a")
    record(plan, a, ["node-1", "node-2"], version="1.36.0", revision="3195", task="deploy")
    err = Console(file=None, stderr=True, width=200)
    run_status(err, tmp_path / "airgap.yaml", transports=None, live=False)
    out = capsys.readouterr().out
    digest = manifest_digest(a)
    rows = {line.split()[1]: line for line in out.splitlines() if "node-" in line}
    assert digest[:16] in rows["node-1"] and digest[:16] in rows["node-2"]
    assert digest[:16] not in rows["node-3"]  # never deployed: no record
    assert "1.36.0 (3195)" in out and "deploy" in out
    assert f"Last bundle the site received: sha256 {digest}" in out.replace("\n", "")
    assert str(tmp_path / "airgap.site" / "manifests") in out.replace("\n", "")
