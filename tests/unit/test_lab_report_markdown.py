"""The Markdown proof report, byte for byte: a rich report and a bare one, each against
its golden file in tests/data (written from the report before it became a template)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.report import (
    FAILED,
    NOT_CHECKED,
    PROVED,
    ClusterNodeRecord,
    DeployCase,
    IsolationRecord,
    NegativeRecord,
    PodRecord,
    PullRecord,
    Report,
    SnapdRecord,
    SnapRecord,
    to_markdown,
)

DATA = Path(__file__).resolve().parent.parent / "data"
INDEX = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def rich_report() -> Report:
    """Every section, every branch: pipes and newlines in cells, sizes in every unit,
    failed rows, an outcome-less isolation row, errors and steps."""
    r = Report(lab="e2e (project k8s-airgap-e2e, slot 3, 10.213.6.0/23)",
               runtime="real k8s snap | revision 1234", stand_in=False,
               started="2026-12-02T10:00:00Z", seconds=312.46)
    r.snaps = "the real k8s snap: k8s=1234 (downloaded), core22=1380 (present)"
    r.notes = ["Instances: nodes: VMs — for the real k8s snap",
               "Connected side: this machine behind the lab proxy (http://10.213.7.3:3128)"]
    r.nodes = ["node-1", "node-2"]
    r.images = ["ghcr.io/canonical/coredns:1.11.1-ck4", "docker.io/library/busybox:1.36"]
    r.tools = {"regsync": "v0.11.7", "k8s-airgap": "0.4.0", "LXD": "5.0.2", "lxd": "5.0.2",
               "containerd (CRI Version)": "containerd 1.6.20 (CRI v1)"}
    r.modes = ["proxy", "mirror", "sideload"]
    r.pulls = [
        PullRecord("proxy", "node-1", r.images[0], True, INDEX, INDEX, 1.234, 0,
                   "CRI PullImage + ImageStatus"),
        PullRecord("proxy", "node-2", r.images[0], True, INDEX, INDEX, 0.5, 512, ""),
        PullRecord("proxy", "node-1", r.images[1], True, INDEX, INDEX, 2, 2048, "ok"),
        PullRecord("mirror", "node-1", r.images[0], False, OTHER, INDEX, 0.015, 5 * 2**20,
                   f"digest {OTHER} is not images.lock's {INDEX}"),
        PullRecord("mirror", "node-2", r.images[1], True, INDEX, INDEX, 3.0, 3 * 2**30,
                   "a | pipe\nand a newline"),
        PullRecord("sideload", "node-1", r.images[1], True, "", INDEX, 0.0, 5000 * 2**30,
                   "imported at start"),
    ]
    r.cluster = [
        ClusterNodeRecord("proxy", "node-1", True, "v1.32.2", "k8s node node-1"),
        ClusterNodeRecord("proxy", "node-2", False, "", "not listed by kubectl get node"),
    ]
    r.pods = [
        PodRecord("proxy", "node-1", "airgap-proof-node-1", r.images[1], "Succeeded", True,
                  f"docker.io/library/busybox@{INDEX}", 12.25, "kubelet pulled it"),
        PodRecord("proxy", "node-2", "airgap-proof-node-2", r.images[1], "Pending", False,
                  "", 300.0, "ErrImagePull: failed | to resolve"),
    ]
    r.isolation = [
        IsolationRecord("node-1", "before deploy: resolve ghcr.io", True,
                        "getent hosts ghcr.io: exit 2 (no answer)", PROVED,
                        "getent hosts ghcr.io", 2, ""),
        IsolationRecord("node-1", "before deploy: HTTPS to the upstream directly", False,
                        "curl: exit 127 (curl not installed: this proves nothing)",
                        NOT_CHECKED, "curl -sS", 127, "not found"),
        IsolationRecord("node-2", "after deploy: resolve ghcr.io", False,
                        "getent hosts ghcr.io: exit 0 (140.82.1.1 ghcr.io)", FAILED,
                        "getent hosts ghcr.io", 0, "140.82.1.1 ghcr.io"),
        IsolationRecord("node-2", "legacy row", True, "no outcome recorded"),
        IsolationRecord("node-2", "legacy failed row", False, "no outcome | exit"),
    ]
    r.negatives = [
        NegativeRecord("proxy", "the proxy is stopped (systemctl stop squid)", True,
                       "proxyconnect tcp: dial tcp 10.213.6.3:3128: connect: refused", 0.123),
        NegativeRecord("mirror", "the mirror lacks x (fallback off)", False,
                       "the pull succeeded\nsecond line", 20),
    ]
    r.errors = ["mirror: deploy failed: node-1 runtime: exit 1 | stderr", "lab down: gone"]
    r.steps = [
        {"step": "lab up", "seconds": 12.345, "detail": "6 instances | containers"},
        {"step": "prepare", "seconds": 3, "detail": ""},
        {"seconds": 1.05},
        {"step": 7, "detail": ["a", "b"]},
    ]
    return r


def passing_report() -> Report:
    """A stand-in proof that passed: the verdict and the "ok" mode rows."""
    r = Report(lab="e2e", runtime="runtime stand-in; containerd 1.6.20", stand_in=True,
               started="2026-12-02T10:00:00Z", seconds=95.5)
    r.snaps = "stand-in snaps, signed by a lab authority"
    r.nodes, r.images, r.modes = ["node-1"], ["docker.io/library/busybox:1.36"], ["proxy"]
    r.pulls = [PullRecord("proxy", "node-1", r.images[0], True, INDEX, INDEX, 0.25, 1023)]
    r.isolation = [IsolationRecord("node-1", "before deploy: resolve ghcr.io", True, "exit 2",
                                   PROVED, "getent hosts ghcr.io", 2)]
    return r


def snapd_report() -> Report:
    """A proof on snapd nodes: the snapd, deploy-case and real/stand-in sections; a unit
    that is not active, or a failed case, fails the report."""
    r = passing_report()
    r.runtime = "real snapd with the lab's stand-in k8s snap; containerd 1.7.24"
    r.snapd = [SnapdRecord("node-1", "2.68.3", "active", [
        SnapRecord("core22", "0", "x1", "base"), SnapRecord("k8s", "1.36.1", "x2",
                                                              "classic,held")])]
    r.deploy_cases = [DeployCase("older k8s 1.35.9", "refused", True, "refusing | to downgrade")]
    r.real_parts, r.stand_in_parts = ["snapd"], ["the k8s snap"]
    return r


def test_snapd_sections_and_their_verdict() -> None:
    r = snapd_report()
    md = to_markdown(r)
    assert md.startswith("# k8s-airgap lab proof: PASSED") and "a **real snapd**" in md
    assert "| node-1 | 2.68.3 | k8s | 1.36.1 | x2 | classic,held | active |" in md
    assert "| older k8s 1.35.9 | refused | ok | refusing \\| to downgrade |" in md
    assert "- real: snapd\n" in md and "- stand-in: the k8s snap\n" in md
    r.snapd[0].unit = "inactive"
    assert not r.ok and to_markdown(r).startswith("# k8s-airgap lab proof: FAILED")
    r.snapd[0].unit = "active"
    r.deploy_cases[0].ok = False
    assert not r.ok and "| older k8s 1.35.9 | refused | FAILED |" in to_markdown(r)


def bare_report() -> Report:
    """The stand-in wording, and every optional section left out."""
    return Report(lab="x", runtime="runtime stand-in", stand_in=True, started="-")


@pytest.mark.parametrize(("report", "golden"), [
    (rich_report(), "e2e-report-golden.md"),
    (passing_report(), "e2e-report-golden-passed.md"),
    (bare_report(), "e2e-report-golden-bare.md"),
])
def test_markdown_report_is_byte_identical_to_its_golden_file(report: Report,
                                                              golden: str) -> None:
    assert to_markdown(report).encode() == (DATA / golden).read_bytes()
