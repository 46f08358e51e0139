"""The default channel and its image list: one place, current, and a warning on mismatch."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from airgap.plan import Mode, parse_plan, starter_plan
from airgap.plan.defaults import DEFAULT_CHANNEL, DEFAULT_K8S_VERSION, default_images
from airgap.plan.sources import plan_images

ROOT = Path(__file__).resolve().parents[2]

# What k8sd registers for 1.36 (canonical/k8sd pkg/k8sd/features/*/register.go and
# pkg/k8sd/setup/containerd.go, read 2026-08-21): `k8s list-images` prints these.
K8SD_1_36 = {
    "ghcr.io/canonical/cilium:1.19.4-ck1",
    "ghcr.io/canonical/cilium-operator-generic:1.19.4-ck1",
    "ghcr.io/canonical/coredns:1.14.6-ck0",
    "ghcr.io/canonical/rawfile-localpv:0.8.3-ck2",
    "ghcr.io/canonical/csi-node-driver-registrar:2.16.0-ck1",
    "ghcr.io/canonical/csi-provisioner:6.2.0-ck1",
    "ghcr.io/canonical/csi-resizer:2.1.0-ck1",
    "ghcr.io/canonical/csi-snapshotter:8.5.0-ck1",
    "ghcr.io/canonical/metallb-controller:v0.16.1-ck0",
    "ghcr.io/canonical/metallb-speaker:v0.16.1-ck0",
    "ghcr.io/canonical/metrics-server:0.9.0-ck0",
    "ghcr.io/canonical/k8s-snap/pause:3.10",
}


def _plan(channel: str | None = None) -> object:
    data: dict[str, object] = {"access": ["proxy"], "proxy": {"https": "http://10.0.0.2:3128"},
                               "nodes": [{"name": "node-1", "address": "10.0.0.9"}]}
    if channel:
        data["k8s"] = {"channel": channel}
    return parse_plan(data, source="airgap.yaml")


def test_the_default_list_is_what_k8sd_registers_for_the_default_channel() -> None:
    assert DEFAULT_CHANNEL == "1.36-classic/stable" and DEFAULT_K8S_VERSION == "1.36"
    assert {str(r) for r in default_images()} == K8SD_1_36
    header = (ROOT / "airgap" / "data" / "default-images.txt").read_text().splitlines()[0]
    assert DEFAULT_CHANNEL in header


def test_init_and_the_examples_use_the_default_channel() -> None:
    for mode in Mode:
        assert yaml.safe_load(starter_plan(mode))["k8s"]["channel"] == DEFAULT_CHANNEL
    for example in (ROOT / "examples").glob("*.yaml"):
        assert yaml.safe_load(example.read_text())["k8s"]["channel"] == DEFAULT_CHANNEL, example
    assert _plan().k8s.channel == DEFAULT_CHANNEL  # type: ignore[attr-defined]


def test_a_plan_on_another_track_warns_when_the_default_list_is_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        refs = plan_images(_plan("1.33-classic/stable"))  # type: ignore[arg-type]
    assert {str(r) for r in refs} >= K8SD_1_36
    assert "1.33-classic/stable is not 1.36-classic/stable" in caplog.text
    assert "--images" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        plan_images(_plan("1.36-classic/candidate"))  # type: ignore[arg-type]
    assert caplog.text == ""
