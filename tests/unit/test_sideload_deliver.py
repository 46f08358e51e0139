"""deliver(): copy, restart the runtime the right way, confirm digests, per node."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.errors import AirgapError
from airgap.nodes import RunResult
from airgap.plan import SIDELOAD_DIR, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.sideload import confirm_images, deliver, parse_ctr_images, restart_runtime
from tests.support.fakes import FakeNode
from tests.unit.test_sideload_fixtures import Img, oci_archive

PAUSE = "ghcr.io/canonical/k8s-snap/pause:3.10"
COREDNS = "ghcr.io/canonical/coredns:1.11.1-ck4"

_MEDIA = "application/vnd.oci.image.manifest.v1+json"
_TAIL = "1.0 MiB linux/amd64 io.cri-containerd.image=managed"
CTR_LS = "\n".join([
    "REF    TYPE    DIGEST    SIZE    PLATFORMS    LABELS",
    f"{{pause}} {_MEDIA} {{pd}} {_TAIL}",
    f"{{coredns}} {_MEDIA} {{cd}} {_TAIL}",
    f"sha256:{'4' * 64} {_MEDIA} {{pd}} {_TAIL}",
]) + "\n"


def snap_node(name: str) -> FakeNode:
    """A node with the k8s snap installed (the fake knows `snap list`, not restart)."""
    node = FakeNode(name, snaps={"k8s": "1"})
    node.on("snap", "restart", answer=RunResult(["snap"], 0, "", ""))
    return node


def plan(*names: str):  # type: ignore[no-untyped-def]
    nodes = [{"name": n, "address": f"10.0.0.{i + 1}", "transport": "local"}
             for i, n in enumerate(names)]
    return parse_plan({"access": ["sideload"], "nodes": nodes})


@pytest.fixture
def archives(tmp_path: Path) -> tuple[list[Path], dict[str, str]]:
    pause, coredns = Img(PAUSE), Img(COREDNS)
    paths = [oci_archive(tmp_path / "pause.tar", pause),
             oci_archive(tmp_path / "coredns.tar", coredns)]
    return paths, {PAUSE: pause.digest, COREDNS: coredns.digest}


def runtime_with(node: FakeNode, listing: str) -> None:
    node.on("ctr", answer=RunResult(["ctr"], 0, listing, ""))


def test_parse_ctr_images() -> None:
    text = CTR_LS.format(pause=PAUSE, coredns=COREDNS, pd="sha256:" + "1" * 64,
                         cd="sha256:" + "2" * 64)
    found = parse_ctr_images(text)
    assert found[PAUSE] == "sha256:" + "1" * 64
    assert found[COREDNS] == "sha256:" + "2" * 64
    assert len(found) == 3


def test_deliver_copies_restarts_snap_and_confirms(archives) -> None:  # type: ignore[no-untyped-def]
    paths, digests = archives
    nodes = [snap_node("node-1"), snap_node("node-2")]
    for n in nodes:
        runtime_with(n, CTR_LS.format(pause=PAUSE, coredns=COREDNS, pd=digests[PAUSE],
                                      cd=digests[COREDNS]))
    results = deliver(plan("node-1", "node-2"), nodes, paths, timeout=0)
    for node, res in zip(nodes, results, strict=True):
        assert res.node == node.name and res.ok, res
        assert node.files[f"{SIDELOAD_DIR}/pause.tar"] == paths[0].read_bytes()
        assert node.files[f"{SIDELOAD_DIR}/coredns.tar"] == paths[1].read_bytes()
        assert node.issued("snap", "restart") == [["snap", "restart", "k8s.containerd"]]
        assert res.restart == "snap restart k8s.containerd"
        assert [(r.image, r.expected, r.found, r.status) for r in res.rows] == [
            (COREDNS, digests[COREDNS], digests[COREDNS], "ok"),
            (PAUSE, digests[PAUSE], digests[PAUSE], "ok"),
        ]
        assert node.issued("ctr", "-n", "k8s.io", "images", "ls")


def test_wrong_and_missing_digests_are_reported(archives) -> None:  # type: ignore[no-untyped-def]
    paths, _ = archives
    node = snap_node("node-1")
    other = "sha256:" + "9" * 64
    listing = CTR_LS.format(pause=PAUSE, coredns="ghcr.io/x/y:1", pd=other, cd=other)
    runtime_with(node, listing)
    [res] = deliver(plan("node-1"), [node], paths, timeout=0)
    assert not res.ok
    status = {r.image: (r.found, r.status) for r in res.rows}
    assert status == {PAUSE: (other, "wrong digest"), COREDNS: (None, "missing")}


def test_a_runtime_unit_without_the_snap_is_restarted_with_systemctl() -> None:
    node = FakeNode("node-1", has_snapd=False)
    assert restart_runtime(node) == "systemctl restart snap.k8s.containerd"
    assert node.issued("systemctl", "restart") == [["systemctl", "restart", "snap.k8s.containerd"]]


def test_runtime_not_installed_is_pending(archives) -> None:  # type: ignore[no-untyped-def]
    paths, _ = archives
    node = FakeNode("node-1", has_snapd=True)
    node.fail_on("systemctl", "cat")
    [res] = deliver(plan("node-1"), [node], paths, timeout=0)
    assert res.restart is None
    assert {r.status for r in res.rows} == {"pending"}
    assert not node.issued("ctr") and not node.issued("systemctl", "restart")
    assert f"{SIDELOAD_DIR}/pause.tar" in node.files


def test_invalid_archive_stops_before_any_transfer(tmp_path: Path, archives) -> None:  # type: ignore[no-untyped-def]
    paths, _ = archives
    bad = oci_archive(tmp_path / "bad.tar", Img(PAUSE.replace("pause", "other")),
                      compress=True)
    node = FakeNode("node-1", snaps={"k8s": "1"})
    with pytest.raises(AirgapError, match="gzip"):
        deliver(plan("node-1"), [node], [*paths, bad])
    assert node.files == {} and node.commands == []


def test_expected_list_is_checked_before_transfer(archives) -> None:  # type: ignore[no-untyped-def]
    paths, _ = archives
    node = FakeNode("node-1", snaps={"k8s": "1"})
    with pytest.raises(AirgapError, match="in no archive"):
        deliver(plan("node-1"), [node], paths,
                expected=[parse_image_ref(PAUSE), parse_image_ref(COREDNS),
                          parse_image_ref("ghcr.io/x/y:1")])
    assert node.files == {}


def test_a_failing_node_does_not_hide_the_others(archives) -> None:  # type: ignore[no-untyped-def]
    paths, digests = archives
    good, bad = snap_node("node-1"), snap_node("node-2")
    runtime_with(good, CTR_LS.format(pause=PAUSE, coredns=COREDNS, pd=digests[PAUSE],
                                     cd=digests[COREDNS]))
    bad.fail_on("snap", "restart", stderr="error: cannot restart")
    r1, r2 = deliver(plan("node-1", "node-2"), [good, bad], paths, timeout=0)
    assert r1.ok
    assert not r2.ok and r2.error and "snap" in r2.error


def test_installed_snap_with_inactive_containerd_is_pending_not_restarted(archives) -> None:  # type: ignore[no-untyped-def]
    """Right after `snap install k8s` the snap is listed but containerd is not running
    (bootstrap/join configures and starts it): no restart, no ctr, rows pending."""
    paths, digests = archives
    node = FakeNode("node-1", snaps={"k8s": "1"}, containerd_active=False)
    [res] = deliver(plan("node-1"), [node], paths, timeout=0)
    assert res.pending and res.error is None and res.restart is None
    assert {r.status for r in res.rows} == {"pending"}
    assert node.issued("systemctl", "is-active") == [
        ["systemctl", "is-active", "--quiet", "snap.k8s.containerd"]]
    assert not node.issued("snap", "restart") and not node.issued("ctr")
    assert f"{SIDELOAD_DIR}/pause.tar" in node.files
    # When bootstrap starts containerd, the snap imports them.
    node.start_containerd()
    assert node.images == digests
    assert f"{SIDELOAD_DIR}/pause.tar.loaded" in node.files


def test_confirm_images_waits_through_a_starting_runtime(archives) -> None:  # type: ignore[no-untyped-def]
    """Just after bootstrap, ctr may fail (socket not up): that is "not yet", not an error."""
    paths, digests = archives
    node = FakeNode("node-1", containerd_active=False)
    for p in paths:
        node.write(f"{SIDELOAD_DIR}/{p.name}", p.read_bytes())
    polls = []

    def sleep(_s: float) -> None:
        polls.append(1)
        if len(polls) == 2:
            node.start_containerd()

    want: dict[str, str | None] = dict(digests)
    rows = confirm_images(node, want, timeout=100, sleep=sleep, clock=lambda: float(len(polls)))
    assert [(r.image, r.status) for r in rows] == [(COREDNS, "ok"), (PAUSE, "ok")]
    assert len(polls) == 2
