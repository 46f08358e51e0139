"""Day 2 in a fresh lab, as `invoke lab.prove --day2` runs it: a delta bundle carried
and merged, a rolling upgrade on real snapd nodes (two control planes and a worker)
with a node made unreachable mid-rollout, and a node added later. One proof per module;
each test asserts one part of its report."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.e2e.labproof import ProofRun, run_lab_proof

pytestmark = [pytest.mark.e2e, pytest.mark.lxd]

LAB = "day2t"
SLOT = int(os.environ.get("K8S_AIRGAP_E2E_DAY2_SLOT", "64"))


Proof = ProofRun


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> ProofRun:
    from lab.proof.day2 import prove_day2

    return run_lab_proof(prove_day2, LAB, SLOT, "day-2 proof", tmp_path_factory)


def _r(proof: Proof):  # type: ignore[no-untyped-def]
    from lab.proof.day2 import Day2Report

    assert isinstance(proof.report, Day2Report)
    return proof.report


def test_the_day2_proof_ran_without_errors(proof: Proof) -> None:
    r = _r(proof)
    assert not r.errors, r.errors
    assert r.ok, [c for c in r.cases if not c.ok]


def test_only_the_delta_crossed(proof: Proof) -> None:
    r = _r(proof)
    d = r.delta
    assert re.fullmatch(r"[0-9a-f]{64}", d["base"])
    assert "manifest.json" in d["files"] and "images.lock" in d["files"]
    assert "snaps/k8s.snap" in d["files"]  # the new revision
    assert "manifest.json.sig" in d["files"]  # the delta is signed
    # Unchanged snaps stay with the site (their lab assertions are signed anew per set).
    assert "snaps/core22.snap" not in d["files"] and "snaps/snapd.snap" not in d["files"]
    assert any(f.startswith("oci/blobs/") for f in d["files"])  # the new image's blobs
    assert d["bytes"] < d["full_bytes"] / 2, d


def test_images_first_then_one_node_at_a_time(proof: Proof) -> None:
    r = _r(proof)
    first = [x for x in r.rollout if x["run"] == "first run"]
    assert [x["node"] for x in first] == ["node-1", "node-2", "node-3"]
    assert [x["status"] for x in first] == ["upgraded", "upgraded", "failed"]
    assert first[0]["images_ready"] is not None
    assert first[0]["images_ready"] <= first[0]["started"] < first[1]["started"], first
    assert first[1]["started"] >= first[0]["started"] + first[0]["seconds"] - 1, first
    # The new image was in every node's runtime before the first refresh began.
    assert sorted(r.before_refresh) == ["node-1", "node-2", "node-3"]
    assert all(d.startswith("sha256:") for d in r.before_refresh.values()), r.before_refresh
    second = {x["node"]: x for x in r.rollout if x["run"] == "second run"}
    assert second["node-3"]["status"] == "upgraded"
    assert second["node-1"]["status"] == second["node-2"]["status"] == "already"
    assert second["node-3"]["started"] >= second["node-3"]["images_ready"]


def test_the_others_stayed_healthy_while_a_node_was_down(proof: Proof) -> None:
    r = _r(proof)
    assert [h["node"] for h in r.health] == ["node-1", "node-2"]
    assert all(h["health"] == "runtime active, CRI answering" for h in r.health), r.health
    cases = {c.case: c for c in r.cases}
    down = cases["node-3 unreachable mid-rollout"]
    assert down.ok and "node-3" in down.detail and "unreachable" in down.detail, down


def test_every_node_runs_b_and_pulls_the_new_image(proof: Proof) -> None:
    from lab.proof.day2 import NEW_IMAGE, SETS

    r = _r(proof)
    assert set(r.snap_list) == {"node-1", "node-2", "node-3", "node-4"}
    assert all(v.startswith(f"{SETS['B'][0]} (x") for v in r.snap_list.values()), r.snap_list
    new = [p for p in r.pulls if p.image == NEW_IMAGE]
    assert sorted(p.node for p in new) == ["node-1", "node-2", "node-3"] and all(
        p.ok for p in new), new


def test_negative_cases_refused_before_any_change(proof: Proof) -> None:
    r = _r(proof)
    cases = {c.case: c for c in r.cases}
    for name in ("delta on the wrong base", "minor skip", "add a node from another bundle"):
        assert cases[name].ok, cases[name]
    assert "skips a minor version" in cases["minor skip"].detail
    assert "would join with another version" in cases["add a node from another bundle"].detail


def test_a_node_added_later_joins_at_b(proof: Proof) -> None:
    r = _r(proof)
    cases = {c.case: c for c in r.cases}
    assert cases["add node-4 at B"].ok, cases["add node-4 at B"]
    tasks = [(h["node"], h["task"]) for h in r.history]
    assert ("node-4", "add-node") in tasks and ("node-3", "upgrade") in tasks, tasks
    assert ("node-1", "deploy") in tasks, tasks


def test_report_files(proof: Proof) -> None:
    md = (proof.out / "day2-report.md").read_text()
    data = json.loads((proof.out / "day2-report.json").read_text())
    assert data["ok"] is True
    assert md.startswith("# k8s-airgap day-2 proof: PASSED")
    assert "## The rollout" in md and "## The delta (B since A)" in md
