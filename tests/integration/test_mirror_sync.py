"""Mirror mode against real registries, real regsync, and a real containerd.

An "upstream" Distribution registry holds small offline-built images that share their
base layer, plus one multi-platform index; a second registry is the mirror, in each
variant the procedure names (http, https with a private CA, htpasswd, nested path).
After `mirror_images`, containerd pulls every image through the rendered hosts.toml
with the upstream stopped, so the pulls can only have come from the mirror.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap import tools
from airgap.cri import CRIClient
from airgap.errors import CommandError
from airgap.mirror import MirrorReport, Status, mirror_images
from airgap.plan import Plan, parse_plan
from airgap.plan.images import ImageRef, parse_image_ref, registries
from airgap.plan.lock import ImageLock, LockedImage
from airgap.render.hosts import render_hosts_files
from airgap.render.sync import RegistryAccess, mirror_path, render_sync_images
from tests.support.containerd import Containerd
from tests.support.ocibuild import make_test_images
from tests.support.regclient import private_regclient_home  # noqa: F401 (autouse)
from tests.support.registry import Registry, TestCA

pytestmark = pytest.mark.integration

NAMES = ["app/one:1", "app/two:1", "tools/three:2"]
MULTI = "test/multi:1"
USER, PASSWORD = "mirror-user", "mirror-pass-123"


@pytest.fixture
def upstream(registry_factory: Callable[..., Registry], tmp_path: Path) -> Registry:
    return registry_factory("upstream")


@pytest.fixture
def upstream_images(upstream: Registry, tmp_path: Path) -> dict[str, str]:
    return make_test_images(upstream, NAMES, multi_platform=MULTI, workdir=tmp_path / "build")


def refs_of(upstream: Registry, digests: dict[str, str]) -> list[ImageRef]:
    return [parse_image_ref(f"{upstream.address}/{name}") for name in sorted(digests)]


def lock_of(upstream: Registry, digests: dict[str, str]) -> ImageLock:
    return ImageLock(["linux/amd64"], [
        LockedImage(parse_image_ref(f"{upstream.address}/{n}"), d) for n, d in digests.items()])


def make_plan(mirror: Registry, tmp_path: Path, *, prefix: str = "",
              auth: bool = False) -> Plan:
    section: dict[str, Any] = {"url": mirror.url}
    if mirror.ca_file is not None:
        section["ca_file"] = str(mirror.ca_file)
    if prefix:
        section["path_prefix"] = prefix
    if auth:
        section["username_env"] = "TEST_MIRROR_USER"
        section["password_env"] = "TEST_MIRROR_PASS"
    return parse_plan({
        "access": ["mirror"],
        "nodes": [{"name": "node-1", "address": "10.0.0.2"}],
        "mirror": section,
    }, source=str(tmp_path / "airgap.yaml"), base_dir=tmp_path)


def http_upstream(upstream: Registry) -> list[RegistryAccess]:
    return [RegistryAccess(upstream.address, tls="disabled")]


def start_mirror(kind: str, registry_factory: Callable[..., Registry], test_ca: TestCA,
                 monkeypatch: pytest.MonkeyPatch) -> tuple[Registry, dict[str, Any]]:
    if kind == "http":
        return registry_factory("mirror"), {}
    if kind == "https-ca":
        return registry_factory("mirror", tls=True, ca=test_ca), {}
    if kind == "htpasswd":
        monkeypatch.setenv("TEST_MIRROR_USER", USER)
        monkeypatch.setenv("TEST_MIRROR_PASS", PASSWORD)
        return (registry_factory("mirror", tls=True, ca=test_ca, htpasswd=(USER, PASSWORD)),
                {"auth": True})
    if kind == "nested":
        return registry_factory("mirror", tls=True, ca=test_ca), {"prefix": "my/own/mirror"}
    raise AssertionError(kind)


def assert_all(report: MirrorReport, status: Status) -> None:
    assert [(str(i.ref), i.status) for i in report.images] == \
        [(str(i.ref), status) for i in report.images], report


def write_rendered_hosts(plan: Plan, refs: list[ImageRef], ctrd: Containerd) -> None:
    ca = plan.resolve(plan.mirror.ca_file).read_bytes() if plan.mirror and plan.mirror.ca_file \
        else None
    for f in render_hosts_files(plan, registries(refs), ca):
        rel = Path(f.path).relative_to(plan.k8s.hosts_dir)
        target = ctrd.hosts_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)


@pytest.mark.parametrize("kind", ["http", "https-ca", "htpasswd", "nested"])
def test_mirror_variant_syncs_verifies_and_resyncs_for_free(
    kind: str,
    tmp_path: Path,
    upstream: Registry,
    upstream_images: dict[str, str],
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
    test_ca: TestCA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mirror, opts = start_mirror(kind, registry_factory, test_ca, monkeypatch)
    plan = make_plan(mirror, tmp_path, **opts)
    refs = refs_of(upstream, upstream_images)
    lock = lock_of(upstream, upstream_images)

    first = mirror_images(plan, refs, lock=lock, upstreams=http_upstream(upstream),
                          config_out=tmp_path / "sync-images.yaml")
    assert_all(first, Status.synced)
    assert first.regsync_ran
    for result in first.images:
        assert result.found == upstream_images[result.ref.repository + ":" + str(result.ref.tag)]
        assert result.bytes_copied > 0
    multi = next(i for i in first.images if i.ref.repository == "test/multi")
    assert multi.platforms == 2
    # The mirror itself, asked independently, serves the locked digests at the right path.
    for ref in refs:
        repo, _, tag = mirror_path(plan, ref).rpartition(":")
        assert mirror.manifest_digest(repo, tag) == lock.find(ref).digest  # type: ignore[union-attr]
    if kind == "nested":
        assert all(r.startswith("my/own/mirror/") for r in mirror.catalog())
    # The shared base layer went to each repository once; nothing was counted twice.
    assert first.bytes_copied < 1.5 * sum(i.bytes_copied for i in first.images[:1]) * len(refs)

    # No change: nothing is copied, regsync is not even started, the upstream is not asked.
    upstream.stop()
    again = mirror_images(plan, refs, lock=lock, upstreams=http_upstream(upstream))
    assert_all(again, Status.present)
    assert again.bytes_copied == 0 and not again.regsync_ran

    # The rendered file is what the user would run by hand: regsync parses it.
    rendered = yaml.safe_load((tmp_path / "sync-images.yaml").read_text())
    assert len(rendered["sync"]) == len(refs)
    assert rendered["defaults"]["parallel"] > 1

    if kind == "htpasswd":
        return  # hosts.toml carries no credentials: a node pulls from an auth mirror
                # only with the runtime's own registry auth, which is not part of this mode.
    ctrd = containerd_factory()
    write_rendered_hosts(plan, refs, ctrd)
    with CRIClient(ctrd.socket) as cri:
        for ref in refs:
            cri.pull_image(str(ref))
            image = cri.image_status(str(ref))
            assert image is not None, ref
            assert image.digests == [lock.find(ref).digest], ref  # type: ignore[union-attr]


def test_seed_sync_file_fails_against_http_mirror_and_ours_works(
    tmp_path: Path, upstream: Registry, upstream_images: dict[str, str],
    registry_factory: Callable[..., Registry],
) -> None:
    mirror = registry_factory("mirror")
    plan = make_plan(mirror, tmp_path)
    ref = parse_image_ref(f"{upstream.address}/app/one:1")
    env = {"MIRROR": mirror.address}
    # The procedure's file: only sync entries (plus what lets regsync read our http
    # upstream, which the procedure's ghcr.io does not need).
    seed = {
        "creds": [{"registry": upstream.address, "tls": "disabled"}],
        "sync": [{"source": str(ref), "target": '{{ env "MIRROR" }}/app/one:1',
                  "type": "image"}],
    }
    seed_file = tmp_path / "seed-sync-images.yaml"
    seed_file.write_text(yaml.safe_dump(seed))
    with pytest.raises(CommandError) as err:
        tools.run_tool("regsync", ["once", "-c", str(seed_file)], env=env, timeout=120)
    assert "server gave HTTP response to HTTPS client" in err.value.stderr, err.value.stderr
    assert mirror.manifest_digest("app/one", "1") is None

    ours = tmp_path / "sync-images.yaml"
    ours.write_bytes(render_sync_images(plan, [ref], upstreams=http_upstream(upstream)).content)
    tools.run_tool("regsync", ["once", "-c", str(ours)], env=env, timeout=120)
    assert mirror.manifest_digest("app/one", "1") == upstream_images["app/one:1"]


def _blob_puts(log: str) -> set[tuple[str, str]]:
    """(repo, digest) of every finished blob upload in a registry access log."""
    found = set()
    for m in re.finditer(r'"PUT /v2/(\S+?)/blobs/uploads/\S*?digest=(sha256(?::|%3A)[0-9a-f]{64})'
                         r'\S* HTTP/1\.1" 201', log):
        found.add((m.group(1), m.group(2).replace("%3A", ":")))
    return found


def test_regsync_itself_copies_nothing_on_a_rerun(
    tmp_path: Path, upstream: Registry, upstream_images: dict[str, str],
    registry_factory: Callable[..., Registry],
) -> None:
    """Even run by hand twice with the full file, regsync checks digests first."""
    mirror = registry_factory("mirror")
    plan = make_plan(mirror, tmp_path)
    refs = refs_of(upstream, upstream_images)
    cfg = tmp_path / "sync-images.yaml"
    cfg.write_bytes(render_sync_images(plan, refs, upstreams=http_upstream(upstream)).content)
    env = {"MIRROR": mirror.address}
    tools.run_tool("regsync", ["once", "-c", str(cfg)], env=env, timeout=120)
    offset = len(mirror.log_file.read_text(errors="replace"))
    assert _blob_puts(mirror.log_file.read_text(errors="replace"))
    tools.run_tool("regsync", ["once", "-c", str(cfg)], env=env, timeout=120)
    assert _blob_puts(mirror.log_file.read_text(errors="replace")[offset:]) == set()


def test_without_a_lock_the_mirror_is_compared_with_the_upstream(
    tmp_path: Path, upstream: Registry, upstream_images: dict[str, str],
    registry_factory: Callable[..., Registry],
) -> None:
    mirror = registry_factory("mirror")
    plan = make_plan(mirror, tmp_path)
    refs = refs_of(upstream, upstream_images)
    report = mirror_images(plan, refs, upstreams=http_upstream(upstream))
    assert_all(report, Status.synced)
    for r in report.images:
        assert r.found == r.expected == upstream_images[f"{r.ref.repository}:{r.ref.tag}"]
    again = mirror_images(plan, refs, upstreams=http_upstream(upstream))
    assert_all(again, Status.present)
    assert not again.regsync_ran
