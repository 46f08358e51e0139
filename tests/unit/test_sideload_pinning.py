"""Side-loaded images are pinned against kubelet's image GC: the ctr label sequence on a
node, the CRI's Image.pinned decoded from real wire bytes, which containerd versions
report the pin, and deploy's report (pinned, or a warning naming the version needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap import cri
from airgap.deploy import SIDELOAD_STEP, deploy
from airgap.deploy.report import StepStatus
from airgap.deploy.sideload import PIN_STEP
from airgap.errors import AirgapError
from airgap.nodes import RunResult
from airgap.sideload import SNAP_CTR
from airgap.sideload.pin import (
    NEEDED,
    PINNED,
    CRIPin,
    cri_pin_error,
    cri_pins,
    gc_warning,
    honours_pins,
    parse_ctr_labels,
    parse_version,
    pin_images,
)
from tests.support.fakes import FakeNode
from tests.unit.test_deploy_sequence import fakes, make_plan, sideload_bundle

PAUSE = "ghcr.io/canonical/k8s-snap/pause:3.10"
NGINX = "docker.io/library/nginx:1.27"
LS = ["ctr", "-n", "k8s.io", "images", "ls"]


def node_with(*images: str, **kw: object) -> FakeNode:
    node = FakeNode("node-1", **kw)  # type: ignore[arg-type]
    node.images = {i: f"sha256:{n:064x}" for n, i in enumerate(images, start=1)}
    return node


# ---- the label sequence on a node -------------------------------------------------


def test_each_image_is_labelled_once_then_read_back() -> None:
    node = node_with(PAUSE, NGINX)
    rows = pin_images(node, [NGINX, PAUSE])
    assert [(r.image, r.status) for r in rows] == [(NGINX, "pinned"), (PAUSE, "pinned")]
    ctr = [c for c in node.commands if c[0] == "ctr" and c[1] == "-n"]
    assert ctr == [LS, [*LS[:4], "label", NGINX, "io.cri-containerd.pinned=pinned"],
                   [*LS[:4], "label", PAUSE, "io.cri-containerd.pinned=pinned"], LS]
    assert node.image_labels == {NGINX: {"io.cri-containerd.pinned": "pinned"},
                                 PAUSE: {"io.cri-containerd.pinned": "pinned"}}
    node.reset_log()
    again = pin_images(node, [NGINX, PAUSE])
    assert [r.status for r in again] == ["already pinned", "already pinned"]
    assert not node.issued("ctr", "-n", "k8s.io", "images", "label")


def test_the_snaps_ctr_is_used_when_ctr_is_not_on_path() -> None:
    node = node_with(PAUSE, missing_commands={"ctr"})
    pin_images(node, [PAUSE])
    assert node.issued(SNAP_CTR, "-n", "k8s.io", "images", "label") == [
        [SNAP_CTR, "-n", "k8s.io", "images", "label", PAUSE, PINNED]]


def test_an_image_not_in_the_runtime_is_not_labelled_and_says_so() -> None:
    node = node_with(PAUSE)
    rows = pin_images(node, [NGINX, PAUSE])
    assert [(r.image, r.status, r.ok) for r in rows] == [
        (NGINX, "missing", False), (PAUSE, "pinned", True)]
    assert [c[5] for c in node.issued("ctr", "-n", "k8s.io", "images", "label")] == [PAUSE]


def test_a_failed_label_names_node_image_and_the_command() -> None:
    node = node_with(PAUSE)
    node.fail_on("ctr", "-n", "k8s.io", "images", "label", stderr="ctr: permission denied")
    with pytest.raises(AirgapError) as err:
        pin_images(node, [PAUSE])
    assert err.value.brief == f"node-1: could not pin {PAUSE}: ctr: permission denied"
    assert f"ctr -n k8s.io images label {PAUSE} {PINNED}" in (err.value.resolution or "")


def test_a_label_that_does_not_show_afterwards_is_an_error() -> None:
    node = node_with(PAUSE)
    listing = RunResult(LS, 0, "REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
                        f"{PAUSE} application/vnd.oci.image.manifest.v1+json sha256:{'1' * 64} "
                        "1.0 MiB linux/amd64 -\n", "")
    node.on(*LS, answer=listing)  # the runtime drops the label
    with pytest.raises(AirgapError, match=f"{PAUSE} does not carry {PINNED}"):
        pin_images(node, [PAUSE])


def test_ctr_listing_labels_parse_as_ctr_prints_them() -> None:
    # As containerd 1.6.20's ctr printed it here (SIZE is two words; LABELS last, "-" none).
    text = (
        "REF                              TYPE                                       DIGEST"
        "            SIZE    PLATFORMS   LABELS\n"
        f"{PAUSE} application/vnd.oci.image.manifest.v1+json sha256:{'9' * 64} 894.0 B "
        "linux/amd64 io.cri-containerd.image=managed,io.cri-containerd.pinned=pinned\n"
        f"{NGINX} application/vnd.oci.image.index.v1+json sha256:{'8' * 64} 1.2 MiB "
        "linux/amd64,linux/arm64 -\n"
    )
    assert parse_ctr_labels(text) == {
        PAUSE: {"io.cri-containerd.image": "managed", "io.cri-containerd.pinned": "pinned"},
        NGINX: {},
    }


# ---- which runtimes report it -----------------------------------------------------


@pytest.mark.parametrize(("text", "version"), [
    ("Client:\n  Version:  1.6.20~ds1\n  Revision: 1.6.20~ds1-1+deb12u3\n\n"
     "Server:\n  Version:  1.6.20~ds1\n  Revision: x\n", (1, 6, 20)),
    ("Client:\n  Version:  v2.0.5\n\nServer:\n  Version:  v1.7.24\n", (1, 7, 24)),
    ("v2.1.3", (2, 1, 3)),
    ("ctr: failed to dial", None),
])
def test_the_daemon_version_is_read_from_the_server_section(
        text: str, version: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize(("version", "honoured"), [
    ((1, 5, 18), False), ((1, 6, 20), False), ((1, 6, 24), False), ((1, 6, 25), True),
    ((1, 6, 39), True), ((1, 7, 0), False), ((1, 7, 9), False), ((1, 7, 10), True),
    ((1, 7, 24), True), ((2, 0, 0), True), ((2, 1, 3), True),
])
def test_label_after_import_is_reported_from_1_6_25_and_1_7_10(
        version: tuple[int, int, int], honoured: bool) -> None:
    assert honours_pins(version) is honoured


def test_the_warning_names_the_version_needed() -> None:
    assert gc_warning("node-1", "1.7.24") == ""
    old = gc_warning("node-1", "1.6.20")
    assert old.startswith("WARNING: node-1: containerd 1.6.20 does not report the pin")
    assert "garbage collection" in old and NEEDED in old
    assert "could not read containerd's version" in gc_warning("node-1", "")


# ---- the CRI's Image.pinned (runtime.v1 Image field 8) -------------------------------


def image_status_response(pinned: bool | None) -> bytes:
    """ImageStatusResponse{image=1: Image{id=1, repo_tags=2, size=4, uid=5, pinned=8}}."""
    image = (cri.field_string(1, "sha256:" + "c" * 64) + cri.field_string(2, PAUSE)
             + cri.field_varint(4, 894) + cri.field_bytes(5, cri.field_varint(1, 65532)))
    if pinned is not None:
        image += b"\x40" + (b"\x01" if pinned else b"\x00")  # key (8 << 3 | varint) = 0x40
    return cri.field_bytes(1, image) + cri.field_bytes(2, cri.field_string(1, "info"))


@pytest.mark.parametrize(("pinned", "want"), [(True, True), (False, False), (None, False)])
def test_pinned_is_decoded_from_image_status(pinned: bool | None, want: bool) -> None:
    status = cri.decode_image_status_response(image_status_response(pinned))
    assert status is not None and status.id == "sha256:" + "c" * 64
    assert status.repo_tags == [PAUSE] and status.size == 894
    assert status.pinned is want


class _Client:
    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers

    def image_status(self, image: str) -> cri.Image | None:
        return cri.decode_image_status_response(self.answers.get(image, b""))


def test_cri_pins_read_image_status_for_each_image() -> None:
    client = _Client({PAUSE: image_status_response(True), NGINX: image_status_response(False)})
    pins = cri_pins(client, [PAUSE, NGINX, "docker.io/library/gone:1"])
    assert pins == [CRIPin(PAUSE, True, True), CRIPin(NGINX, True, False),
                    CRIPin("docker.io/library/gone:1", False, False)]
    assert cri_pin_error("node-1", pins[:1]) is None
    err = cri_pin_error("node-1", pins, "1.6.20")
    assert err is not None
    assert err.brief == ("node-1: side-loaded images not in the runtime: docker.io/library/gone:1;"
                         f" not pinned in the CRI: {NGINX}")
    assert NEEDED in (err.resolution or "") and "containerd 1.6.20" in (err.details or "")


# ---- deploy ---------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "warns"), [("1.7.24", False), ("1.6.20", True)])
def test_deploy_pins_images_imported_at_bootstrap(tmp_path: Path, version: str,
                                                  warns: bool) -> None:
    plan = make_plan(["sideload"], roles=("control-plane", "worker"))
    bundle, digests = sideload_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan, containerd_active=False, containerd_version=version)
    report = deploy(plan, dict(nodes), bundle, verify=lambda _p: None, sleep=lambda _s: None)
    assert report.ok, [(n.name, n.steps) for n in report.nodes]
    for name, node in nodes.items():
        assert node.image_labels == {i: {"io.cri-containerd.pinned": "pinned"} for i in digests}
        step = next(s for s in report.node(name).steps if s.step == SIDELOAD_STEP)
        assert f"2 image(s) labelled {PINNED} (2 now)" in step.detail
        assert ("WARNING" in step.detail) is warns
        if warns:
            assert f"containerd {version} does not report the pin" in step.detail
            assert NEEDED in step.detail
        else:
            assert f"containerd {version} reports the pin" in step.detail


def test_deploy_pins_images_delivered_to_a_running_runtime(tmp_path: Path) -> None:
    plan = make_plan(["sideload"], roles=("control-plane",))
    bundle, digests = sideload_bundle(tmp_path / "bundle")
    _, nodes = fakes(plan, containerd_version="2.1.3")
    node = nodes["node-1"]
    report = deploy(plan, dict(nodes), bundle, verify=lambda _p: None, sleep=lambda _s: None)
    assert report.ok, report.node("node-1").steps
    assert set(node.image_labels) == set(digests)
    nr = report.node("node-1")
    assert nr.status_of(SIDELOAD_STEP) is None  # delivered in the runtime step
    pin = next(s for s in nr.steps if s.step == PIN_STEP)
    # default_deliver labelled them with the delivery; the step confirms and reports.
    assert pin.status is StepStatus.done and "2 image(s) labelled" in pin.detail
    assert "containerd 2.1.3 reports the pin" in pin.detail
    # The label went on after the import was confirmed (ls with digests, then label).
    cmds = [" ".join(c) for c in node.commands]
    restart = next(i for i, c in enumerate(cmds) if c in (
        "snap restart k8s.containerd", "systemctl restart snap.k8s.containerd"))
    first_label = next(i for i, c in enumerate(cmds) if " images label " in c)
    assert restart < first_label
