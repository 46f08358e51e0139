"""Offline images: reproducible, valid OCI (umoci reads them), pushed with regctl over
http, https with a private CA, and htpasswd; the busybox layer is one shared blob."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.ocibuild import Builder, Layout, write_oci_archive
from tests.support.ocibuild import build_image, make_test_images, push_layout, regctl_for
from tests.support.registry import Registry, TestCA
from tests.support.require import require_binary

pytestmark = pytest.mark.integration

RegistryFactory = Callable[..., Registry]


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_binary("busybox")
    require_binary("umoci")


def _manifest(layout: Path, tag: str) -> dict[str, object]:
    lay = Layout(layout)
    return lay.read_json(lay.tags()[tag])


def test_same_files_give_same_digest(tmp_path: Path) -> None:
    files = {"etc/app.conf": b"x=1\n", "/usr/local/bin/run": b"#!/bin/sh\necho hi\n"}
    a = Builder(tmp_path / "a").image("t", files)
    b = Builder(tmp_path / "b").image("t", files)
    c = Builder(tmp_path / "c").image("t", {**files, "etc/app.conf": b"x=2\n"})
    assert a.digest == b.digest
    assert c.digest != a.digest


def test_umoci_unpacks_the_layout(tmp_path: Path) -> None:
    layout = build_image(tmp_path / "layout", {"usr/local/bin/run": b"#!/bin/sh\necho hi\n"})
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle)],
        check=True, capture_output=True,
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin/busybox").stat().st_size > 100_000
    assert (rootfs / "bin/sh").is_symlink()
    assert (rootfs / "usr/local/bin/run").stat().st_mode & 0o111
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh"]


def test_index_has_two_platforms_and_archive_is_a_layout(tmp_path: Path) -> None:
    builder = Builder(tmp_path / "layout")
    desc = builder.index("multi", {"etc/x": b"x"}, image_name="example.com/multi:1")
    index = builder.layout.read_json(desc.digest)
    manifests = index["manifests"]
    assert isinstance(manifests, list)
    platforms = {m["platform"]["architecture"] for m in manifests}
    assert platforms == {"amd64", "arm64"}
    arm = next(m for m in manifests if m["platform"]["architecture"] == "arm64")
    config = builder.layout.read_json(builder.layout.read_json(arm["digest"])["config"]["digest"])
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    archive = write_oci_archive(builder.layout.path, tmp_path / "multi.tar")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        top = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert "oci-layout" in names
    assert top["manifests"][0]["annotations"]["io.containerd.image.name"] == "example.com/multi:1"


def test_push_http_and_shared_base_blob_stored_once(registry_factory: RegistryFactory) -> None:
    reg = registry_factory()
    digests = make_test_images(reg, ["library/alpha:1", "team/beta:2"])
    assert set(digests) == {"library/alpha:1", "team/beta:2", "test/multi:1"}
    assert reg.manifest_digest("library/alpha", "1") == digests["library/alpha:1"]
    assert reg.manifest_digest("test/multi", "1") == digests["test/multi:1"]
    status, _, body = reg.request(
        "GET", "/v2/library/alpha/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert status == 200
    base = json.loads(body)["layers"][0]["digest"]
    assert reg.has_blob("team/beta", base)
    status, _, body = reg.request(
        "GET", "/v2/team/beta/manifests/2",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert json.loads(body)["layers"][0]["digest"] == base
    # Distribution stores each blob once, linked from every repository that uses it.
    blob_dir = reg.data_dir / "docker/registry/v2/blobs/sha256" / base[7:9] / base[7:]
    assert (blob_dir / "data").is_file()
    links = list((reg.data_dir / "docker/registry/v2/repositories").glob(
        f"*/*/_layers/sha256/{base[7:]}/link"))
    assert len(links) == 3, links


def test_push_https_with_ca_and_htpasswd(
    registry_factory: RegistryFactory, test_ca: TestCA, tmp_path: Path
) -> None:
    reg = registry_factory(tls=True, ca=test_ca, htpasswd=("pusher", "pw-1234"))
    layout = build_image(tmp_path / "layout", {"etc/hello": b"hello\n"})
    digest = push_layout(layout, f"{reg.address}/app/hello:1", registry=reg)
    assert reg.manifest_digest("app/hello", "1") == digest
    # A client without the CA fails TLS; one without credentials is refused.
    bare = regctl_for(None, tmp_path / "bare")
    out = bare.run(["image", "digest", f"{reg.address}/app/hello:1"], check=False)
    assert out.returncode != 0
    assert "certificate" in out.stderr.lower() or "x509" in out.stderr.lower()
    no_auth = regctl_for(None, tmp_path / "noauth")
    no_auth.configure(reg.address, ca_pem=test_ca.pem)
    out = no_auth.run(["image", "digest", f"{reg.address}/app/hello:1"], check=False)
    assert out.returncode != 0
    assert "unauthorized" in out.stderr.lower() or "401" in out.stderr
    assert regctl_for(reg, tmp_path / "ok").digest(f"{reg.address}/app/hello:1") == digest
