"""The failure catalogue in a fresh lab, as `invoke lab.prove --catalogue` runs it: each
known cause induced, caught before install by the check named with its fix, undone, and
the same check passing again. One run per module; the tests read its report."""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.labproof import ProofRun, run_lab_proof

pytestmark = [pytest.mark.e2e, pytest.mark.lxd]

LAB = "catlgt"
SLOT = int(os.environ.get("K8S_AIRGAP_E2E_CATALOGUE_SLOT", "68"))


Run = ProofRun


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> ProofRun:
    from lab.proof.catalogue import prove_catalogue

    return run_lab_proof(prove_catalogue, LAB, SLOT, "catalogue", tmp_path_factory)


def _rows(run: Run):  # type: ignore[no-untyped-def]
    from lab.proof.catalogue import CatalogueReport

    assert isinstance(run.report, CatalogueReport)
    assert not run.report.errors, run.report.errors
    return {r.cause: r for r in run.report.rows}


def test_every_cause_is_caught_with_its_fix_and_passes_once_undone(run: Run) -> None:
    rows = _rows(run)
    assert len(rows) >= 14, sorted(rows)
    for cause, r in rows.items():
        assert r.ok, r
        assert r.exit_code == 1, (cause, r.exit_code)
        assert r.fix not in ("", "-"), (cause, r)


def test_each_cause_names_what_is_wrong(run: Run) -> None:
    rows = _rows(run)
    hosts = rows["a broken hosts.toml on a node (the upstream procedure's unquoted server)"]
    assert "not valid TOML" in hosts.message and "hosts.toml ghcr.io" in hosts.message
    assert "no default route" in rows["no default route on a node"].message
    connect = rows["the proxy refuses CONNECT to a registry"]
    assert "refused CONNECT" in connect.message and "ghcr.io" in connect.fix
    assert "TLS" in rows["the plan names the wrong mirror CA"].message
    assert "10250 (timeout: dropped)" in rows["a k8s port dropped by a firewall (DROP)"].message
    clock = rows["the node's clock off by 10 minutes"]
    assert clock.note == "simulated at the check's input" and "-600 s" in clock.message
    assert "snapd" in rows["the bundle's manifest omits snapd"].message
    reset = rows["a k8s port rejected with a TCP reset (REJECT)"]
    assert "10250 (refused: a REJECT rule or a TCP reset)" in reset.message, reset
    assert "no echo" in rows["8472/udp (VXLAN) dropped between the nodes"].message
    missing = rows["an image of images.lock missing from the mirror"]
    assert "mirror images" in missing.message and "--from-bundle" in missing.fix, missing
    typo = rows["a node whose plan address is not its own (a typo)"]
    assert ".99" in typo.message, typo
    skew = rows["the nodes' clocks 5 minutes apart"]
    assert skew.note == "simulated at the check's input" and "node-2" in skew.message
    assert "/var/snap" in rows["a small separate filesystem for /var/snap"].message
    assert ".tar.gz" in rows["a compressed archive (.tar.gz) beside the side-load archives"
                             ].message


def test_report_files(run: Run) -> None:
    md = (run.out / "catalogue-report.md").read_text()
    data = json.loads((run.out / "catalogue-report.json").read_text())
    assert data["ok"] is True and md.startswith("# k8s-airgap failure catalogue: PASSED")
