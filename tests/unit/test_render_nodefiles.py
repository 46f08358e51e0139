"""Every file a plan implies: the right set per mode, for nodes and the connected side."""

from __future__ import annotations

from typing import Any

import pytest

from airgap.plan import parse_plan
from airgap.plan.images import parse_image_list
from airgap.render.nodefiles import render_connected_files, render_node_files

IMAGES = parse_image_list("ghcr.io/canonical/coredns:1.11.1-ck4\nnginx\nquay.io:8443/a/b:1\n")
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def plan_with(access: list[str], **extra: Any) -> Any:
    data: dict[str, Any] = {
        "access": access,
        "nodes": [
            {"name": "node-1", "address": "10.0.0.1"},
            {"name": "node-2", "address": "10.0.0.2", "role": "worker"},
        ],
        "mirror": {"url": "https://10.0.0.9:5443"},
        "proxy": {"http": "http://10.0.0.8:3128"},
        "network": {"route_persistence": "none"},
    }
    data.update(extra)
    return parse_plan(data)


def paths(plan: Any, ca: bytes | None = CA) -> list[str]:
    return [f.path for f in render_node_files(plan, plan.nodes[0], IMAGES, ca)]


def test_sideload_only_renders_the_route_file() -> None:
    assert paths(plan_with(["sideload"])) == []
    plan = plan_with(["sideload"], network={})
    assert paths(plan) == ["/etc/netplan/90-airgap-default-route.yaml"]


def test_mirror_renders_hosts_for_every_registry_sorted() -> None:
    assert paths(plan_with(["mirror"])) == [
        "/etc/containerd/hosts.d/docker.io/ca.crt",
        "/etc/containerd/hosts.d/docker.io/hosts.toml",
        "/etc/containerd/hosts.d/ghcr.io/ca.crt",
        "/etc/containerd/hosts.d/ghcr.io/hosts.toml",
        "/etc/containerd/hosts.d/quay.io:8443/ca.crt",
        "/etc/containerd/hosts.d/quay.io:8443/hosts.toml",
    ]


def test_proxy_renders_the_dropin() -> None:
    assert paths(plan_with(["proxy"])) == [
        "/etc/systemd/system/snap.k8s.containerd.service.d/http-proxy.conf"
    ]


def test_mirror_and_proxy_combined() -> None:
    got = paths(plan_with(["mirror", "proxy", "sideload"]), ca=None)
    assert got == [
        "/etc/containerd/hosts.d/docker.io/hosts.toml",
        "/etc/containerd/hosts.d/ghcr.io/hosts.toml",
        "/etc/containerd/hosts.d/quay.io:8443/hosts.toml",
        "/etc/systemd/system/snap.k8s.containerd.service.d/http-proxy.conf",
    ]


def test_node_files_are_absolute_and_deterministic() -> None:
    plan = plan_with(["mirror", "proxy"], network={})
    a = render_node_files(plan, plan.nodes[0], IMAGES, CA)
    b = render_node_files(plan, plan.nodes[0], list(reversed(IMAGES)), CA)
    assert a == b
    assert all(f.path.startswith("/") for f in a)


def test_connected_files_list_images_sorted() -> None:
    files = render_connected_files(plan_with(["sideload"]), list(reversed(IMAGES)))
    assert [f.path for f in files] == ["images.txt"]
    assert files[0].text.splitlines() == [str(i) for i in IMAGES]


def test_connected_files_include_sync_images_in_mirror_mode() -> None:
    pytest.importorskip("airgap.render.sync")
    plan = plan_with(["mirror"])
    files = {f.path: f for f in render_connected_files(plan, IMAGES, CA)}
    assert set(files) == {"images.txt", "sync-images.yaml"}
    assert "ghcr.io/canonical/coredns:1.11.1-ck4" in files["sync-images.yaml"].text
