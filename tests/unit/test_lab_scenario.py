"""The proof's pure parts: expected digests per mode, the connected side's guard,
and the refusal of --k8s-snap where the real snap cannot run. No LXD, no network."""

from __future__ import annotations

import os
import socket

import pytest

from airgap.errors import AirgapError
from airgap.plan import Mode
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage
from lab import proof
from lab.proof import realsnap_proof

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def lock() -> ImageLock:
    return ImageLock(["linux/amd64"], [
        LockedImage(parse_image_ref("ghcr.io/canonical/coredns:1.11.1-ck4"), "sha256:" + "a" * 64,
                    INDEX, {"linux/amd64": "sha256:" + "b" * 64}),
        LockedImage(parse_image_ref("docker.io/library/busybox:1.36"), "sha256:" + "c" * 64,
                    MANIFEST, {"linux/amd64": "sha256:" + "c" * 64}, source="workload"),
    ])


def test_pulls_by_tag_expect_the_locked_digest_sideload_the_platform_manifest() -> None:
    pulled = proof.expected_digests(lock(), Mode.proxy, "linux/amd64")
    assert pulled == {"ghcr.io/canonical/coredns:1.11.1-ck4": "sha256:" + "a" * 64,
                      "docker.io/library/busybox:1.36": "sha256:" + "c" * 64}
    assert proof.expected_digests(lock(), Mode.mirror, "linux/amd64") == pulled
    side = proof.expected_digests(lock(), Mode.sideload, "linux/amd64")
    assert side["ghcr.io/canonical/coredns:1.11.1-ck4"] == "sha256:" + "b" * 64
    assert side["docker.io/library/busybox:1.36"] == "sha256:" + "c" * 64


def test_connected_side_sets_env_refuses_upstream_names_and_restores() -> None:
    conn = proof.Connected({"HTTPS_PROXY": "http://10.213.1.3:3128",
                            "K8S_AIRGAP_UNIT_MARKER": "1"}, ("ghcr.io",),
                           "http://10.213.1.3:3128")
    before = os.environ.get("HTTPS_PROXY")
    real = socket.getaddrinfo
    with conn.active():
        assert os.environ["HTTPS_PROXY"] == "http://10.213.1.3:3128"
        with pytest.raises(socket.gaierror, match="through the lab proxy"):
            socket.getaddrinfo("GHCR.io.", 443)
        assert socket.getaddrinfo("127.0.0.1", 80)  # other names still resolve
    assert socket.getaddrinfo is real
    assert os.environ.get("HTTPS_PROXY") == before
    assert "K8S_AIRGAP_UNIT_MARKER" not in os.environ


def test_k8s_snap_refusal_names_every_blocker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realsnap_proof, "full_proof_blockers",
                        lambda: ["there is no `snap` command", "LXD cannot run VMs here"])
    with pytest.raises(AirgapError) as info:
        proof.prove(k8s_snap=True)
    text = str(info.value)
    assert text.startswith("--k8s-snap: the full proof with the real k8s snap cannot run")
    assert "no `snap` command" in text and "cannot run VMs" in text
    assert "Resolution:" in text
