"""The snap step's decisions against the recording fake: ack or --dangerous, k8s kept,
refreshed or refused (by revision, or by SHA3-384 and version for x-revisions), and
automatic refreshes held with --hold or refresh.hold. The fake's answers for these were
checked against Debian 13's snapd (tests/integration/test_lab_snapd.py)."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airgap.bundle import Manifest, SnapEntry, write_manifest
from airgap.deploy import BundleSnap, StepStatus
from airgap.deploy.snapstep import (
    HOLD_DAYS,
    NOT_TRUSTED,
    SnapRow,
    installed_sha3,
    k8s_decision,
    parse_hold,
    parse_snap_list,
    version_key,
)
from airgap.errors import AirgapError
from airgap.snaps.verify import snap_sha3_384
from tests.unit.test_deploy_sequence import REVS, fakes, make_bundle, make_plan, run_deploy


def real_sha3_bundle(root: Path) -> Path:
    """make_bundle, with each manifest entry's snap-sha3-384 that of the file."""
    make_bundle(root)
    from airgap.bundle import read_manifest

    m = read_manifest(root)
    entries = [SnapEntry(e.name, e.revision, e.channel, snap_sha3_384(root / e.file)[0],
                         e.snap_id, e.file, e.assertion, e.chain) for e in m.snaps]
    write_manifest(root, Manifest(m.files, entries, m.images, m.platforms, m.tools))
    return root


def one_node(**kw: object):  # type: ignore[no-untyped-def]
    plan = make_plan(["proxy"], roles=("control-plane",))
    _, nodes = fakes(plan, **kw)
    return plan, nodes, nodes["node-1"]


def test_snap_list_parses_notes_as_snapd_prints_them() -> None:
    out = ("Name    Version  Rev    Tracking       Publisher   Notes\n"
           "core22  20240111 1564   latest/stable  canonical** base\n"
           "k8s     v1.32.2  3195   1.32-classic/stable  canonical**  classic,held\n"
           "probe   1.0      x2     -              -           -\n")
    rows = parse_snap_list(out)
    assert rows["k8s"].notes == ("classic", "held") and rows["k8s"].held and rows["k8s"].classic
    assert rows["probe"].notes == () and rows["probe"].local and not rows["probe"].held
    assert rows["core22"].rev == "1564" and not rows["core22"].local
    assert "Name" not in rows


def test_untrusted_assertions_fail_without_dangerous_and_nothing_is_installed(
        tmp_path: Path) -> None:
    plan, nodes, node = one_node(trusts_assertions=False)
    report, _ = run_deploy(plan, nodes, make_bundle(tmp_path / "b"))
    nr = report.node("node-1")
    assert nr.status_of("snaps") is StepStatus.failed
    msg = str(nr.errors[0])
    assert "snapd does not trust" in msg and "snapd.assert" in msg and "--dangerous" in msg
    assert "cannot resolve prerequisite assertion" in msg
    assert node.issued("snap", "install") == [] and node.snaps == {}
    assert nr.status_of("hold") is StepStatus.not_run


def test_dangerous_installs_untrusted_snaps_and_names_them(tmp_path: Path) -> None:
    plan, nodes, node = one_node(trusts_assertions=False)
    report, _ = run_deploy(plan, nodes, make_bundle(tmp_path / "b"), dangerous=True)
    nr = report.node("node-1")
    assert report.ok, nr.steps
    assert nr.dangerous == ["snapd", "core22", "k8s"]
    installs = node.issued("snap", "install")
    assert [c[-1] for c in installs] == ["--dangerous"] * 3
    assert installs[2][-2:] == ["--classic", "--dangerous"]
    detail = next(s.detail for s in nr.steps if s.step == "snaps")
    assert detail.count(NOT_TRUSTED) == 3 and "k8s=x1" in detail
    assert node.snaps == {"snapd": "x1", "core22": "x1", "k8s": "x1"}


def test_trusted_assertions_never_use_dangerous_even_when_allowed(tmp_path: Path) -> None:
    plan, nodes, node = one_node()
    report, _ = run_deploy(plan, nodes, make_bundle(tmp_path / "b"), dangerous=True)
    assert report.ok
    assert all("--dangerous" not in c for c in node.issued("snap", "install"))
    assert report.node("node-1").dangerous == []
    assert node.snaps == REVS


def test_an_x_revision_of_the_bundles_file_is_kept_by_sha3(tmp_path: Path) -> None:
    bundle = real_sha3_bundle(tmp_path / "b")
    plan, nodes, node = one_node(trusts_assertions=False)
    run_deploy(plan, nodes, bundle, dangerous=True)
    node.reset_log()
    report, _ = run_deploy(plan, nodes, bundle, dangerous=True)
    nr = report.node("node-1")
    assert report.ok and node.issued("snap", "install") == [] and node.issued("snap", "ack") == []
    detail = next(s.detail for s in nr.steps if s.step == "snaps")
    assert nr.status_of("snaps") is StepStatus.done and "same SHA3-384" in detail
    assert node.snaps["k8s"] == "x1"


def test_an_x_revision_with_other_content_is_compared_by_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = real_sha3_bundle(tmp_path / "b")
    plan, nodes, node = one_node(trusts_assertions=False, versions={"k8s": "1.36.0"})
    node.snaps.update({"snapd": "x1", "core22": "x1", "k8s": "x4"})
    node.files["/var/lib/snapd/snaps/k8s_x4.snap"] = b"another build"
    monkeypatch.setattr(BundleSnap, "version", lambda self: "1.36.1")
    report, _ = run_deploy(plan, nodes, bundle, dangerous=True)
    assert report.ok, report.node("node-1").steps
    detail = next(s.detail for s in report.node("node-1").steps if s.step == "snaps")
    assert "1.36.0 (x4) -> 1.36.1" in detail and "by version" in detail
    assert len(node.issued("snap", "install")) == 1  # k8s only: snapd and the base stay

    monkeypatch.setattr(BundleSnap, "version", lambda self: "1.35.9")
    node.snaps["k8s"] = "x4"
    node.reset_log()
    report, _ = run_deploy(plan, nodes, bundle, dangerous=True)
    nr = report.node("node-1")
    assert nr.status_of("snaps") is StepStatus.failed
    assert "newer than the bundle's 1.35.9; refusing to downgrade" in nr.errors[0].brief
    assert node.issued("snap", "install") == []


def test_decision_table() -> None:
    snap = BundleSnap("k8s", Path("k8s.snap"), Path("k8s.assert"), "3195", "h" * 64)

    def decide(row: SnapRow | None, sha: str = "", version: str = "v1.32.2") -> str:
        return k8s_decision("n1", row, snap, lambda: sha, lambda: version).action

    assert decide(None) == "install"
    assert decide(SnapRow("k8s", "v1.32.2", "3195")) == "keep"
    assert decide(SnapRow("k8s", "v1.32.1", "3100")) == "refresh"
    with pytest.raises(AirgapError, match="revision 3300, newer than the bundle's revision 3195"):
        decide(SnapRow("k8s", "v1.32.3", "3300"))
    assert decide(SnapRow("k8s", "v1.32.2", "x1"), sha="h" * 64) == "keep"
    assert decide(SnapRow("k8s", "v1.32.1", "x1"), sha="other") == "refresh"
    with pytest.raises(AirgapError, match="cannot tell which is newer"):
        decide(SnapRow("k8s", "v1.32.2", "x1"), sha="other")
    assert version_key("v1.32.10") > version_key("v1.32.9") > version_key("1.32.2")


def test_installed_sha3_is_base64url_without_padding() -> None:
    _, _, node = one_node()
    node.files["/var/lib/snapd/snaps/k8s_x1.snap"] = bytes(range(256)) * 50
    got = installed_sha3(node, SnapRow("k8s", "1", "x1"))
    want = base64.urlsafe_b64encode(hashlib.sha3_384(bytes(range(256)) * 50).digest())
    assert got == want.decode().rstrip("=") and len(got) == 64 and "=" not in got
    assert installed_sha3(node, SnapRow("k8s", "1", "x9")) == ""  # no such file


def test_hold_forever_where_snapd_has_it_and_the_second_deploy_sees_it(tmp_path: Path) -> None:
    plan, nodes, node = one_node()
    bundle = make_bundle(tmp_path / "b")
    report, _ = run_deploy(plan, nodes, bundle)
    nr = report.node("node-1")
    assert nr.status_of("hold") is StepStatus.changed
    assert node.issued("snap", "refresh") == [["snap", "refresh", "--hold=forever", "k8s"]]
    assert node.held == {"k8s"} and node.issued("snap", "set") == []
    node.reset_log()
    report, _ = run_deploy(plan, nodes, bundle)
    hold = next(s for s in report.node("node-1").steps if s.step == "hold")
    assert hold.status is StepStatus.done and "classic,held" in hold.detail
    assert node.issued("snap", "refresh") == []


def test_hold_until_a_date_on_a_snapd_without_hold(tmp_path: Path) -> None:
    plan, nodes, node = one_node(per_snap_hold=False)
    bundle = make_bundle(tmp_path / "b")
    report, _ = run_deploy(plan, nodes, bundle)
    hold = next(s for s in report.node("node-1").steps if s.step == "hold")
    assert hold.status is StepStatus.changed and "no --hold" in hold.detail
    until = parse_hold(node.refresh_hold)
    assert until is not None
    days = (until - datetime.now(timezone.utc)) / timedelta(days=1)
    assert HOLD_DAYS - 1 < days <= HOLD_DAYS
    node.reset_log()
    report, _ = run_deploy(plan, nodes, bundle)
    hold = next(s for s in report.node("node-1").steps if s.step == "hold")
    assert hold.status is StepStatus.done and "refresh.hold" in hold.detail
    assert node.issued("snap", "set") == []
    # A hold that ends soon is renewed.
    node.refresh_hold = (datetime.now(timezone.utc) + timedelta(days=3)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    report, _ = run_deploy(plan, nodes, bundle)
    assert report.node("node-1").status_of("hold") is StepStatus.changed
    assert len(node.issued("snap", "set")) == 1


def test_preflight_checks_the_hold_deploy_set() -> None:
    from airgap.preflight.host import check_refresh_hold
    from airgap.preflight.report import CheckStatus

    _, _, node = one_node()
    [c] = check_refresh_hold(node, has_snap=True)
    assert c.status is CheckStatus.skip and "not installed yet" in c.detail
    node.snaps.update(REVS)
    [c] = check_refresh_hold(node, has_snap=True)
    assert c.status is CheckStatus.fail and "--hold=forever" in c.fix
    node.held.add("k8s")
    [c] = check_refresh_hold(node, has_snap=True)
    assert c.status is CheckStatus.ok and "held" in c.detail
    node.held.clear()
    node.refresh_hold = (datetime.now(timezone.utc) + timedelta(days=60)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    [c] = check_refresh_hold(node, has_snap=True)
    assert c.status is CheckStatus.ok and "refresh.hold" in c.detail
    node.refresh_hold = (datetime.now(timezone.utc) + timedelta(days=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    [c] = check_refresh_hold(node, has_snap=True)
    assert c.status is CheckStatus.fail and "within 30 days" in c.detail
    [c] = check_refresh_hold(node, has_snap=False)
    assert c.status is CheckStatus.skip
