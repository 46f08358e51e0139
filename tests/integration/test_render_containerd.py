"""Rendered hosts.toml, read by its real consumer: containerd's CRI plugin, as kubelet pulls.

Each test renders the files from a plan with airgap.render, installs them where the
plan says (classic /etc/containerd/hosts.d mapped into a test root, or a real
containerd-base-dir under the test's temp dir), starts Debian's containerd with that
directory as its registry config_path, and pulls through the CRI from a real Debian
docker-registry acting as the mirror. Images are built offline (umoci, busybox-static).

The upstream registry names never resolve and never leave the machine: a reserved
.test name where server is the mirror (no lookup ever happens), and a closed loopback
port wherever containerd could fall back to the upstream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from airgap.cri import CRIClient
from airgap.errors import AirgapError
from airgap.plan import Plan, mirror_ca_pem, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.render import RenderedFile
from airgap.render.hosts import render_hosts_files
from tests.support import free_port
from tests.support.containerd import Containerd
from tests.support.ocibuild import make_test_images
from tests.support.registry import Registry, TestCA

pytestmark = pytest.mark.integration

UPSTREAM = "ghcr.airgap.test"  # reserved TLD: never resolves
FAIL_FAST_SECONDS = 10.0


def make_plan(
    registry: Registry, tmp_path: Path, *, base_dir: Path | None = None, **mirror: Any
) -> Plan:
    settings: dict[str, Any] = {"url": registry.url}
    if registry.ca_file is not None:
        settings["ca_file"] = str(registry.ca_file)
    settings.update(mirror)
    data: dict[str, Any] = {
        "access": ["mirror"],
        "nodes": [{"name": "node-1", "address": "127.0.0.1"}],
        "mirror": settings,
    }
    if base_dir is not None:
        data["k8s"] = {"containerd_base_dir": str(base_dir)}
    return parse_plan(data, source="test-plan.yaml", base_dir=tmp_path)


def install(files: Sequence[RenderedFile], root: Path | None) -> None:
    """Write rendered files at their node paths (below root, for the classic layout)."""
    for f in files:
        target = Path(f.path) if root is None else root / f.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
        target.chmod(f.mode)


def render_for(plan: Plan, upstreams: Sequence[str]) -> list[RenderedFile]:
    return render_hosts_files(plan, upstreams, mirror_ca_pem(plan))


def assert_miss_fails_fast(cri: CRIClient, ref: str) -> None:
    """A pull of an image the mirror lacks fails at once with "not found", at the mirror."""
    started = time.monotonic()
    with pytest.raises(AirgapError) as err:
        cri.pull_image(ref)
    elapsed = time.monotonic() - started
    text = str(err.value)
    assert elapsed < FAIL_FAST_SECONDS, text
    assert ref in text
    assert "not found" in text, text
    # No x509 error: top-level `ca` makes the mirror-as-server trusted too (FACTS).
    assert "x509" not in text and "certificate" not in text, text
    assert "connection refused" not in text, text


def pull_and_check(ctrd: Containerd, ref: str, digest: str) -> None:
    with CRIClient(ctrd.socket) as cri:
        assert cri.image_status(ref) is None
        image_id = cri.pull_image(ref)
        status = cri.image_status(ref)
    assert status is not None and status.id == image_id
    assert status.repo_tags == [ref]  # stored under the upstream name kubelet asks for
    assert status.digests == [digest]


def test_http_mirror_classic_layout(
    tmp_path: Path,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
) -> None:
    mirror = registry_factory()
    digests = make_test_images(mirror, ["canonical/coredns:1.11.1-ck4"], multi_platform=None)
    plan = make_plan(mirror, tmp_path)
    files = render_for(plan, [UPSTREAM])
    assert [f.path for f in files] == [f"/etc/containerd/hosts.d/{UPSTREAM}/hosts.toml"]
    root = tmp_path / "node-root"
    install(files, root)
    ctrd = containerd_factory(hosts_dir=root / "etc/containerd/hosts.d")
    pull_and_check(
        ctrd, f"{UPSTREAM}/canonical/coredns:1.11.1-ck4", digests["canonical/coredns:1.11.1-ck4"]
    )


@pytest.mark.parametrize("layout", ["classic", "containerd-base-dir"])
def test_https_mirror_with_ca(
    tmp_path: Path,
    layout: str,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
    test_ca: TestCA,
) -> None:
    mirror = registry_factory(tls=True, ca=test_ca)
    digests = make_test_images(mirror, ["canonical/k8s-snap/pause:3.10"], multi_platform=None)
    if layout == "classic":
        plan = make_plan(mirror, tmp_path)
        root: Path | None = tmp_path / "node-root"
        assert root is not None
        hosts_dir = root / "etc/containerd/hosts.d"
    else:
        plan = make_plan(mirror, tmp_path, base_dir=tmp_path / "k8s-base")
        root = None
        hosts_dir = Path(plan.k8s.hosts_dir)
        assert hosts_dir == tmp_path / "k8s-base/etc/containerd/hosts.d"
    files = render_for(plan, [UPSTREAM])
    assert sorted(Path(f.path).name for f in files) == ["ca.crt", "hosts.toml"]
    install(files, root)
    ctrd = containerd_factory(hosts_dir=hosts_dir)
    pull_and_check(
        ctrd, f"{UPSTREAM}/canonical/k8s-snap/pause:3.10", digests["canonical/k8s-snap/pause:3.10"]
    )


def test_nested_path_mirror(
    tmp_path: Path,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
    test_ca: TestCA,
) -> None:
    mirror = registry_factory(tls=True, ca=test_ca)
    nested = f"my/own/{UPSTREAM}/canonical/coredns:1.12.0-ck1"
    digests = make_test_images(mirror, [nested], multi_platform=None)
    plan = make_plan(mirror, tmp_path, path_prefix="my/own/{registry}")
    root = tmp_path / "node-root"
    install(render_for(plan, [UPSTREAM]), root)
    ctrd = containerd_factory(hosts_dir=root / "etc/containerd/hosts.d")
    # ghcr.io/canonical/coredns:1.12.0-ck1 is fetched from <mirror>/my/own/ghcr.io/canonical/coredns
    pull_and_check(ctrd, f"{UPSTREAM}/canonical/coredns:1.12.0-ck1", digests[nested])


def test_fallback_off_missing_image_fails_fast_with_not_found(
    tmp_path: Path,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
    test_ca: TestCA,
) -> None:
    mirror = registry_factory(tls=True, ca=test_ca)
    make_test_images(mirror, ["canonical/present:1"], multi_platform=None)
    root = tmp_path / "node-root"
    # The upstream is a closed loopback port: if containerd fell back, it would go there.
    upstream = f"127.0.0.1:{free_port()}"
    install(render_for(make_plan(mirror, tmp_path, fallback=False), [UPSTREAM, upstream]), root)
    ctrd = containerd_factory(hosts_dir=root / "etc/containerd/hosts.d")
    with CRIClient(ctrd.socket) as cri:
        for name in (UPSTREAM, upstream):
            assert cri.pull_image(f"{name}/canonical/present:1").startswith("sha256:")
            assert_miss_fails_fast(cri, f"{name}/canonical/missing:1")


def test_fallback_on_tries_the_upstream_after_a_miss(
    tmp_path: Path,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
) -> None:
    """The contrast: with fallback the miss goes on to the upstream (here a closed
    loopback port; on a real node, DNS and connect time-outs towards the internet)."""
    mirror = registry_factory()
    make_test_images(mirror, ["canonical/present:1"], multi_platform=None)
    upstream = f"127.0.0.1:{free_port()}"
    root = tmp_path / "node-root"
    install(render_for(make_plan(mirror, tmp_path, fallback=True), [upstream]), root)
    assert (root / f"etc/containerd/hosts.d/{upstream}/hosts.toml").is_file()
    ctrd = containerd_factory(hosts_dir=root / "etc/containerd/hosts.d")
    with CRIClient(ctrd.socket) as cri:
        assert cri.pull_image(f"{upstream}/canonical/present:1").startswith("sha256:")
        with pytest.raises(AirgapError) as err:
            cri.pull_image(f"{upstream}/canonical/missing:1")
    assert "connection refused" in str(err.value), str(err.value)


# --- The seed's files, given to the same containerd: they fail where ours work. ---

SEED_NESTED = """\
server = {mirror}/v2/my/own/{upstream}
[host."{mirror}/v2/my/own/{upstream}"]
capabilities = ["pull", "resolve"]
ca = "/var/snap/k8s/common/etc/containerd/hosts.d/{upstream}/ca.crt"
override_path = true
"""

SEED_HTTPS = """\
[host."{mirror}"]
capabilities = ["pull", "resolve"]
ca = "/var/snap/k8s/common/etc/containerd/hosts.d/{upstream}/ca.crt"
"""


@pytest.mark.parametrize("seed", ["nested-unquoted-server", "https-ca-path"])
def test_seed_hosts_toml_fails_and_ours_pulls(
    tmp_path: Path,
    seed: str,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
    test_ca: TestCA,
) -> None:
    upstream = f"127.0.0.1:{free_port()}"  # any fallback stays on a closed loopback port
    strict_ca = Path(f"/var/snap/k8s/common/etc/containerd/hosts.d/{upstream}/ca.crt")
    if strict_ca.exists():
        pytest.skip(f"{strict_ca} exists on this machine")
    mirror = registry_factory(tls=True, ca=test_ca)
    prefix = f"my/own/{upstream.replace(':', '-')}"
    repo = "canonical/coredns:1.12.0-ck1"
    name = f"{prefix}/{repo}" if seed.startswith("nested") else repo
    digests = make_test_images(mirror, [name], multi_platform=None)
    root = tmp_path / "node-root"
    hosts_dir = root / "etc/containerd/hosts.d"
    host_dir = hosts_dir / upstream
    host_dir.mkdir(parents=True)
    # As the seed says: the CA copied to the classic directory, hosts.toml as printed.
    assert mirror.ca_file is not None
    (host_dir / "ca.crt").write_bytes(mirror.ca_file.read_bytes())
    template = SEED_NESTED if seed.startswith("nested") else SEED_HTTPS
    (host_dir / "hosts.toml").write_text(
        template.format(mirror=mirror.url, upstream=upstream).replace(f"my/own/{upstream}", prefix)
    )
    ctrd = containerd_factory(hosts_dir=hosts_dir)
    ref = f"{upstream}/{repo}"
    with CRIClient(ctrd.socket) as cri, pytest.raises(AirgapError) as err:
        cri.pull_image(ref)
    seed_error = str(err.value)

    # Ours, rendered from the equivalent plan, into the same directory.
    for f in host_dir.iterdir():
        f.unlink()
    mirror_opts = {"path_prefix": prefix} if seed.startswith("nested") else {}
    install(render_for(make_plan(mirror, tmp_path, **mirror_opts), [upstream]), root)
    pull_and_check(ctrd, ref, digests[name])
    assert ref in seed_error
    if seed.startswith("nested"):
        # containerd drops the unparsable file and goes to the upstream itself: on a
        # node that is the internet (DNS, time-outs); here, a closed loopback port.
        assert "connection refused" in seed_error and mirror.address not in seed_error
        assert "failed to decode hosts.toml" in ctrd.log_file.read_text()
    else:
        assert f'unable to read CA cert "{strict_ca}"' in seed_error


def test_digest_reference_pulls_through_the_mirror(
    tmp_path: Path,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
) -> None:
    """Pinned references (images.lock) resolve through the same hosts.toml."""
    mirror = registry_factory()
    digests = make_test_images(mirror, ["canonical/cilium:1.15.2-ck2"], multi_platform=None)
    root = tmp_path / "node-root"
    install(render_for(make_plan(mirror, tmp_path), [UPSTREAM]), root)
    ctrd = containerd_factory(hosts_dir=root / "etc/containerd/hosts.d")
    ref = parse_image_ref(f"{UPSTREAM}/canonical/cilium:1.15.2-ck2").with_digest(
        digests["canonical/cilium:1.15.2-ck2"]
    )
    pinned = f"{UPSTREAM}/{ref.repository}@{ref.digest}"
    with CRIClient(ctrd.socket) as cri:
        assert cri.pull_image(pinned).startswith("sha256:")
