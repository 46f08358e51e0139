"""Which reference is exported and which digest is expected, with and without a lock."""

from __future__ import annotations

import pytest

from airgap.errors import AirgapError
from airgap.plan import parse_plan
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage
from airgap.sideload import (
    Source,
    archive_file_name,
    expected_from_lock,
    plan_platform,
    select_images,
)

INDEX = "application/vnd.oci.image.index.v1+json"
IDX, AMD, ARM = ("sha256:" + c * 64 for c in "abc")
PAUSE = parse_image_ref("ghcr.io/canonical/k8s-snap/pause:3.10")
NGINX = parse_image_ref("nginx:1.27")


def lock() -> ImageLock:
    return ImageLock(["linux/amd64"], [
        LockedImage(PAUSE, IDX, INDEX, {"linux/amd64": AMD, "linux/arm64": ARM}),
        LockedImage(NGINX, AMD, "application/vnd.oci.image.manifest.v1+json", {}),
    ])


def test_lock_pins_the_export_and_expects_the_platform_manifest() -> None:
    pause, nginx = select_images([PAUSE, NGINX], "linux/arm64", lock=lock())
    assert pause.source == f"{PAUSE.name}@{IDX}" and pause.expected_digest == ARM
    assert nginx.source == f"docker.io/library/nginx:1.27@{AMD}"
    assert nginx.expected_digest == AMD  # a single manifest: its own digest
    assert pause.ref.name == "ghcr.io/canonical/k8s-snap/pause:3.10"
    assert archive_file_name(pause.ref) == "ghcr.io_canonical_k8s-snap_pause_3.10.tar"


def test_lock_without_the_platform_is_an_error() -> None:
    with pytest.raises(AirgapError, match="no linux/s390x manifest"):
        select_images([PAUSE], "linux/s390x", lock=lock())


def test_source_registry_with_nested_prefix() -> None:
    src = Source.parse("http://127.0.0.1:5000/mirror/{registry}")
    [img] = select_images([NGINX], "linux/amd64", source=src)
    assert img.source == "127.0.0.1:5000/mirror/docker.io/library/nginx:1.27"
    assert img.ref.name == "docker.io/library/nginx:1.27"
    assert src.regctl_args() == ["--host", "reg=127.0.0.1:5000,tls=disabled"]
    assert Source.parse("https://reg.example:5000").regctl_args() == []
    with pytest.raises(AirgapError):
        Source.parse("reg.example:5000")


def test_expected_from_lock_for_invoke_verify() -> None:
    refs = expected_from_lock(lock(), "linux/amd64")
    assert [str(r) for r in refs] == [f"{PAUSE.name}@{AMD}", f"docker.io/library/nginx:1.27@{AMD}"]


def test_platform_defaults_to_the_plans_not_this_machines() -> None:
    node = [{"name": "n1", "address": "10.0.0.1"}]
    arm = parse_plan({"access": ["sideload"], "nodes": node, "platforms": ["linux/arm64"]})
    assert plan_platform(arm, None) == "linux/arm64"
    assert plan_platform(arm, "linux/amd64") == "linux/amd64"
    both = parse_plan({"access": ["sideload"], "nodes": node,
                       "platforms": ["linux/arm64", "linux/amd64"]})
    with pytest.raises(AirgapError, match="--platform"):
        plan_platform(both, None)
