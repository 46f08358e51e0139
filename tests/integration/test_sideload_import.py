"""Archives imported by a real containerd keep their names and digests; bad archives
are stopped by the validator before anything is copied to a node.

Images are built offline (busybox + umoci-compatible OCI, lab/ocibuild.py), pushed to a
real Distribution registry on loopback, exported with the real regctl, imported with
`ctr -n k8s.io images import` into a real containerd.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from airgap import tools
from airgap.errors import AirgapError
from airgap.nodes import LocalNode
from airgap.plan import parse_plan
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage
from airgap.sideload import (
    SINGLE_ARCHIVE,
    RuntimeAccess,
    Source,
    deliver,
    export_images,
    parse_ctr_images,
    select_images,
    validate_archive,
)
from tests.support.containerd import Containerd
from tests.support.ocibuild import make_test_images
from tests.support.registry import Registry
from tests.support.require import require_binary

pytestmark = pytest.mark.integration

AMD64 = "linux/amd64"
# name in the registry -> the name the nodes know it by (upstream, fully qualified)
PUSHED = ["canonical/k8s-snap/pause:3.10", "canonical/coredns:1.11.1-ck4", "library/nginx:1.27"]
NAMES = ["ghcr.io/canonical/k8s-snap/pause:3.10", "ghcr.io/canonical/coredns:1.11.1-ck4",
         "docker.io/library/nginx:1.27"]
MULTI = "test/multi:1"
MULTI_NAME = "ghcr.io/test/multi:1"


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_binary("busybox")
    tools.find_tool("regctl")


@pytest.fixture
def upstream(registry_factory: Callable[..., Registry], tmp_path: Path) -> Registry:
    reg = registry_factory("upstream")
    make_test_images(reg, PUSHED, shared=True, multi_platform=MULTI, workdir=tmp_path / "build")
    return reg


def platform_digest(reg: Registry, repo: str, platform: str) -> str:
    out = tools.run_tool("regctl", ["--host", f"reg={reg.address},tls=disabled", "image",
                                    "digest", "--platform", platform, f"{reg.address}/{repo}"])
    return out.stdout.strip()


def images_in(ctrd: Containerd) -> dict[str, str]:
    return parse_ctr_images(ctrd.ctr("images", "ls").stdout)


def selection(upstream: Registry):  # type: ignore[no-untyped-def]
    refs = [parse_image_ref(n) for n in [*NAMES, MULTI_NAME]]
    return select_images(refs, AMD64, source=Source.parse(upstream.url))


def expected_digests(upstream: Registry) -> dict[str, str]:
    return {name: platform_digest(upstream, repo, AMD64)
            for name, repo in zip([*NAMES, MULTI_NAME], [*PUSHED, MULTI], strict=True)}


def test_per_image_archives_keep_names_and_digests(
    upstream: Registry, containerd_factory: Callable[..., Containerd], tmp_path: Path
) -> None:
    out = tmp_path / "images"
    reports = export_images(selection(upstream), out, AMD64, source=Source.parse(upstream.url))
    assert sorted(p.name for p in out.iterdir()) == sorted(r.path.name for r in reports)
    want = expected_digests(upstream)
    # For the multi-platform index, the archive holds the amd64 manifest, not the index.
    assert {i.name: i.digest for r in reports for i in r.images} == want
    ctrd = containerd_factory()
    for rep in reports:
        ctrd.ctr("images", "import", str(rep.path))
    found = images_in(ctrd)
    for name, digest in want.items():
        assert found.get(name) == digest, (name, found)


def test_single_archive_dedups_and_imports_every_image(
    upstream: Registry, containerd_factory: Callable[..., Containerd], tmp_path: Path
) -> None:
    src = Source.parse(upstream.url)
    per_image = export_images(selection(upstream), tmp_path / "per", AMD64, source=src)
    [single] = export_images(selection(upstream), tmp_path / "one", AMD64, source=src,
                             single_archive=True)
    assert single.path.name == SINGLE_ARCHIVE
    assert [i.name for i in single.images] == [*NAMES, MULTI_NAME]
    # Every image carries the same busybox layer: stored once here, four times per image.
    assert single.size < 0.5 * sum(r.size for r in per_image)
    # Overhead is tar headers and padding only (at most 1 KiB a file) plus index.json.
    assert single.size <= single.blob_bytes + 1024 * (single.blob_count + 2) + 1024 + 4096
    ctrd = containerd_factory()
    ctrd.ctr("images", "import", str(single.path))
    found = images_in(ctrd)
    for name, digest in expected_digests(upstream).items():
        assert found.get(name) == digest, (name, found)


def test_locked_export_pins_the_index_and_expects_the_platform_manifest(
    upstream: Registry, tmp_path: Path
) -> None:
    index_digest = tools.run_tool(
        "regctl", ["--host", f"reg={upstream.address},tls=disabled", "image", "digest",
                   f"{upstream.address}/{MULTI}"]).stdout.strip()
    amd64 = platform_digest(upstream, MULTI, AMD64)
    lock = ImageLock([AMD64], [LockedImage(
        parse_image_ref(MULTI_NAME), index_digest, "application/vnd.oci.image.index.v1+json",
        {AMD64: amd64, "linux/arm64": platform_digest(upstream, MULTI, "linux/arm64")})])
    [img] = select_images([parse_image_ref(MULTI_NAME)], AMD64, lock=lock,
                          source=Source.parse(upstream.url))
    assert img.source.endswith(f"@{index_digest}") and img.expected_digest == amd64
    [rep] = export_images([img], tmp_path / "out", AMD64, source=Source.parse(upstream.url))
    assert rep.images[0].digest == amd64


def regctl_export(upstream: Registry, repo: str, dest: Path, *extra: str) -> Path:
    tools.run_tool("regctl", ["--host", f"reg={upstream.address},tls=disabled", "image",
                              "export", *extra, f"{upstream.address}/{repo}", str(dest)])
    return dest


def test_bad_archives_are_rejected_before_transfer(
    upstream: Registry, tmp_path: Path
) -> None:
    pause = parse_image_ref(NAMES[0])
    multi = parse_image_ref(MULTI_NAME)
    no_name = regctl_export(upstream, PUSHED[0], tmp_path / "no-name.tar", "--platform", AMD64)
    with pytest.raises(AirgapError) as err:
        validate_archive(no_name, [pause], AMD64)
    assert "never found by kubelet" in str(err.value)
    assert f"--name {NAMES[0]}" in (err.value.resolution or "")

    gz = regctl_export(upstream, PUSHED[0], tmp_path / "gz.tar", "--platform", AMD64,
                       "--name", NAMES[0], "--compress")
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    with pytest.raises(AirgapError) as err:
        validate_archive(gz, [pause], AMD64)
    assert "gzip-compressed" in str(err.value) and "uncompressed" in str(err.value)

    arm = regctl_export(upstream, MULTI, tmp_path / "arm.tar", "--platform", "linux/arm64",
                        "--name", MULTI_NAME)
    with pytest.raises(AirgapError) as err:
        validate_archive(arm, [multi], AMD64)
    assert "is for linux/arm64, the plan's nodes are linux/amd64" in str(err.value)
    assert "--platform linux/amd64" in (err.value.resolution or "")

    # deliver() validates first: none of the three reaches the node.
    images_dir = tmp_path / "node" / "images"
    plan = parse_plan({"access": ["sideload"],
                       "nodes": [{"name": "node-1", "address": "10.0.0.1", "transport": "local"}]})
    for bad in (no_name, gz, arm):
        with pytest.raises(AirgapError):
            deliver(plan, [LocalNode("node-1")], [bad], expected=[pause, multi],
                    runtime=RuntimeAccess(images_dir=str(images_dir)))
    assert not images_dir.exists()
    assert gzip.decompress(gz.read_bytes())  # the file itself was fine, only compressed


def test_deliver_to_a_node_and_confirm(
    upstream: Registry, containerd_factory: Callable[..., Containerd], tmp_path: Path
) -> None:
    """LocalNode + real containerd. The restart hook does what the snap's containerd
    does at start: import every *.tar in the images directory, rename it *.tar.loaded."""
    src = Source.parse(upstream.url)
    [single] = export_images(selection(upstream), tmp_path / "out", AMD64, source=src,
                             single_archive=True)
    ctrd = containerd_factory()
    images_dir = tmp_path / "node" / "var-snap-k8s-common-images"

    def restart(node: LocalNode) -> str:
        ctrd.stop()
        ctrd.start()
        for tar in sorted(images_dir.glob("*.tar")):
            ctrd.ctr("images", "import", str(tar))
            tar.rename(tar.with_name(tar.name + ".loaded"))
        return "restarted (test containerd, snap import emulated)"

    runtime = RuntimeAccess(images_dir=str(images_dir),
                            ctr=("ctr", "--address", str(ctrd.socket)), restart=restart)  # type: ignore[arg-type]
    plan = parse_plan({"access": ["sideload"],
                       "nodes": [{"name": "node-1", "address": "10.0.0.1", "transport": "local"}]})
    [res] = deliver(plan, [LocalNode("node-1")], [single.path], runtime=runtime, timeout=30)
    assert res.ok, res
    assert res.copied == [SINGLE_ARCHIVE]
    assert (images_dir / f"{SINGLE_ARCHIVE}.loaded").is_file()
    want = expected_digests(upstream)
    assert {r.image: (r.found, r.status) for r in res.rows} == {
        n: (d, "ok") for n, d in want.items()
    }
