"""Pinning a side-loaded image on a real containerd: import an archive as the snap does
(no pin label), label it with airgap.sideload.pin_images through ctr, read the label
back from `ctr images ls`, and ask the CRI (ImageStatus through airgap.cri.CRIClient)
whether it reports the image pinned, which is what kubelet's image GC reads.

The CRI's answer depends on the containerd version (read in containerd's source: a
label added after the import is reported from 1.6.25 and 1.7.10, and in every 2.x);
the test asserts the answer that version must give, and on an older one (Debian 12's
1.6.20 on these machines) that the check names the version pinning needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from airgap.cri import CRIClient
from airgap.nodes import LocalNode
from airgap.sideload import RuntimeAccess, validate_archive
from airgap.sideload.pin import (
    NEEDED,
    PIN_LABEL,
    cri_pin_error,
    cri_pins,
    honours_pins,
    parse_ctr_labels,
    parse_version,
    pin_images,
    runtime_version,
)
from tests.support.containerd import Containerd
from tests.support.ocibuild import build_image, write_oci_archive

pytestmark = pytest.mark.integration

NAME = "ghcr.io/k8s-airgap-test/pinme:1"


def test_imported_image_is_labelled_pinned_and_the_cri_says_what_its_version_does(
    containerd_factory: Callable[..., Containerd], tmp_path: Path
) -> None:
    layout = build_image(tmp_path / "layout", {"etc/pinme": b"pin me\n"}, base_layer=False,
                         tag="1", image_name=NAME)
    archive = write_oci_archive(layout, tmp_path / "pinme.tar")
    assert [i.name for i in validate_archive(archive, None, "linux/amd64").images] == [NAME]
    ctrd = containerd_factory()
    ctrd.ctr("images", "import", str(archive))
    # As the snap's import leaves it: the image is there, with no pin label.
    assert PIN_LABEL not in parse_ctr_labels(ctrd.ctr("images", "ls").stdout)[NAME]

    node = LocalNode("ctrd")
    access = RuntimeAccess(ctr=("ctr", "--address", str(ctrd.socket)))
    rows = pin_images(node, [NAME, "ghcr.io/k8s-airgap-test/absent:1"], runtime=access)
    assert [(r.image, r.status) for r in rows] == [
        (NAME, "pinned"), ("ghcr.io/k8s-airgap-test/absent:1", "missing")]
    assert parse_ctr_labels(ctrd.ctr("images", "ls").stdout)[NAME][PIN_LABEL] == "pinned"
    again = pin_images(node, [NAME], runtime=access)  # idempotent: nothing labelled again
    assert [r.status for r in again] == ["already pinned"]

    version = runtime_version(node, runtime=access)
    parsed = parse_version(version)
    assert parsed is not None, version
    with CRIClient(ctrd.socket) as cri:
        assert parse_version(cri.version().runtime_version) == parsed
        [pin] = cri_pins(cri, [NAME])
    assert pin.present
    assert pin.pinned is honours_pins(parsed), (version, pin)
    problem = cri_pin_error("ctrd", [pin], version)
    if honours_pins(parsed):
        assert problem is None
    else:
        assert problem is not None and "not pinned in the CRI" in problem.brief
        assert NEEDED in (problem.resolution or "") and version in (problem.details or "")
