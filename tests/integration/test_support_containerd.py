"""containerd fixture + airgap.cri: CRI pulls go through a hand-written hosts.toml."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from airgap.cri import CRIClient
from airgap.errors import AirgapError
from tests.support.containerd import Containerd
from tests.support.ocibuild import make_test_images
from tests.support.registry import Registry, TestCA

pytestmark = pytest.mark.integration

UPSTREAM = "registry.airgap.test"  # reserved TLD: never resolves, never leaves the machine


def _hosts_toml(hosts_dir: Path, upstream: str, mirror: Registry, *, ca: bool) -> None:
    d = hosts_dir / upstream
    d.mkdir(parents=True, exist_ok=True)
    ca_line = ""
    if ca:
        assert mirror.ca_file is not None
        shutil.copy(mirror.ca_file, d / "ca.crt")
        ca_line = 'ca = "ca.crt"\n'
    (d / "hosts.toml").write_text(
        f'server = "{mirror.url}"\n{ca_line}\n'
        f'[host."{mirror.url}"]\n  capabilities = ["pull", "resolve"]\n'
        + (f'  {ca_line}' if ca else "")
    )


def test_version(containerd_factory: Callable[..., Containerd]) -> None:
    ctrd = containerd_factory()
    with CRIClient(ctrd.socket) as cri:
        v = cri.version()
    assert v.runtime_name == "containerd"
    assert v.runtime_api_version == "v1"
    assert v.runtime_version.startswith("1.")


def test_cri_pull_through_hosts_toml_http(
    registry_factory: Callable[..., Registry], containerd_factory: Callable[..., Containerd]
) -> None:
    mirror = registry_factory()
    digests = make_test_images(mirror, ["library/alpha:1"])
    ctrd = containerd_factory()
    _hosts_toml(ctrd.hosts_dir, UPSTREAM, mirror, ca=False)
    with CRIClient(ctrd.socket) as cri:
        assert cri.image_status(f"{UPSTREAM}/library/alpha:1") is None
        ref = cri.pull_image(f"{UPSTREAM}/library/alpha:1")
        image = cri.image_status(f"{UPSTREAM}/library/alpha:1")
        assert image is not None
        assert image.id == ref
        assert image.repo_tags == [f"{UPSTREAM}/library/alpha:1"]
        assert image.digests == [digests["library/alpha:1"]]
        assert image.size > 500_000  # the busybox layer
        multi = cri.pull_image(f"{UPSTREAM}/test/multi:1")
        listed = {i.id: i for i in cri.list_images()}
        assert set(listed) == {ref, multi}
        assert listed[multi].digests == [digests["test/multi:1"]]
        with pytest.raises(AirgapError) as err:
            cri.pull_image(f"{UPSTREAM}/library/missing:1")
        text = str(err.value)
        assert f"{UPSTREAM}/library/missing:1" in text and str(ctrd.socket) in text
        assert "not found" in text
    # ctr sees the same image store (namespace k8s.io)
    assert f"{UPSTREAM}/library/alpha:1" in ctrd.ctr("images", "ls", "-q").stdout


def test_cri_pull_https_mirror_needs_ca(
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
    test_ca: TestCA,
) -> None:
    mirror = registry_factory(tls=True, ca=test_ca)
    make_test_images(mirror, ["library/alpha:1"], multi_platform=None)
    ctrd = containerd_factory()
    _hosts_toml(ctrd.hosts_dir, UPSTREAM, mirror, ca=False)
    with CRIClient(ctrd.socket) as cri:
        with pytest.raises(AirgapError) as err:
            cri.pull_image(f"{UPSTREAM}/library/alpha:1")
        assert "x509" in str(err.value)
        assert "CA" in (err.value.resolution or "")
        _hosts_toml(ctrd.hosts_dir, UPSTREAM, mirror, ca=True)
        assert cri.pull_image(f"{UPSTREAM}/library/alpha:1").startswith("sha256:")


def test_cri_error_when_socket_missing(tmp_path: Path) -> None:
    with CRIClient(tmp_path / "none.sock", timeout=2) as cri, pytest.raises(AirgapError) as err:
        cri.list_images()
    assert str(tmp_path / "none.sock") in str(err.value)
    assert "containerd" in (err.value.resolution or "")
