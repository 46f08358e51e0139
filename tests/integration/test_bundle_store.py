"""The bundle's image store and `mirror --from-bundle`, against real Distribution
registries: an "upstream" holding small offline-built images that share a base layer
plus one multi-platform index, and an empty "mirror" on the air-gapped side. The
upstream is stopped before every push, so nothing can come from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from airgap.bundle.store import blob_path, check_store, fill_store, read_index
from airgap.errors import AirgapError
from airgap.mirror import Status
from airgap.mirror import from_bundle as fb
from airgap.plan import Plan, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage
from airgap.registry import RegistryClient
from airgap.registry.blobs import put_manifest
from tests.support.ocibuild import make_test_images
from tests.support.regclient import private_regclient_home  # noqa: F401 (autouse)
from tests.support.registry import Registry

pytestmark = pytest.mark.integration

NAMES = ["app/one:1", "app/two:1", "tools/three:2"]
MULTI = "test/multi:1"


@pytest.fixture
def upstream(registry_factory: Callable[..., Registry]) -> Registry:
    return registry_factory("upstream")


@pytest.fixture
def lock(upstream: Registry, tmp_path: Path) -> ImageLock:
    digests = make_test_images(upstream, NAMES, multi_platform=MULTI, workdir=tmp_path / "build")
    return ImageLock(["linux/amd64"], [
        LockedImage(parse_image_ref(f"{upstream.address}/{n}"), d)
        for n, d in sorted(digests.items())])


def client_of(reg: Registry) -> RegistryClient:
    return RegistryClient(reg.address, tls=False, label=reg.address)


@pytest.fixture
def bundle(upstream: Registry, lock: ImageLock, tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    fill_store(lock, root, lambda _r: client_of(upstream))
    upstream.stop()  # from here on, only the bundle holds the images
    return root


def plan_for(mirror: Registry, tmp_path: Path) -> Plan:
    return parse_plan({"access": ["mirror"], "nodes": [{"name": "node-1", "address": "10.0.0.2"}],
                       "mirror": {"url": mirror.url}},
                      source=str(tmp_path / "airgap.yaml"), base_dir=tmp_path)


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "oci" / "blobs" / "sha256").iterdir() if p.is_file())


def test_the_store_names_every_image_and_keeps_each_blob_once(
        upstream: Registry, lock: ImageLock, tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    first = fill_store(lock, root, lambda _r: client_of(upstream))
    refs = {s.ref: s.digest for s in read_index(root)}
    assert refs == {str(i.ref): i.digest for i in lock.images}
    layout = json.loads((root / "oci" / "oci-layout").read_text())
    assert layout == {"imageLayoutVersion": "1.0.0"}
    # Shared base layer once: the blob bytes on disk are the unique blobs of the lock.
    assert first.fetched_bytes == first.blob_bytes > 0
    on_disk = blob_files(root)
    assert len({p.name for p in on_disk}) == len(on_disk)
    assert check_store(root, lock) == []
    again = fill_store(lock, root, lambda _r: client_of(upstream))
    assert again.fetched_bytes == 0 and again.kept == again.blobs == first.blobs


def test_a_flipped_byte_in_one_blob_is_named(bundle: Path, lock: ImageLock) -> None:
    biggest = max(blob_files(bundle), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0x01
    biggest.write_bytes(bytes(data))
    problems = check_store(bundle, lock)
    assert problems and all(biggest.name in p for p in problems), problems
    assert "does not match its digest" in problems[0]


def test_distribution_refuses_an_index_whose_platform_manifests_it_lacks(
        bundle: Path, registry_factory: Callable[..., Registry]) -> None:
    """Why the store keeps every platform of an index (the locked digest)."""
    mirror = registry_factory("bare")
    multi = next(s for s in read_index(bundle) if s.ref.endswith(MULTI))
    body = blob_path(bundle / "oci", multi.digest).read_bytes()
    with pytest.raises(AirgapError, match=r"MANIFEST_BLOB_UNKNOWN|manifest blob unknown"):
        put_manifest(client_of(mirror), "test/multi", "1", multi.media_type, body)


def test_push_into_an_empty_mirror_sends_each_blob_once_and_verifies_every_digest(
        bundle: Path, lock: ImageLock, registry_factory: Callable[..., Registry],
        tmp_path: Path) -> None:
    mirror = registry_factory("mirror")
    plan = plan_for(mirror, tmp_path)
    report = fb.push_bundle(plan, bundle, lock)
    assert report.ok and {i.status for i in report.images} == {Status.synced}
    unique = sum(p.stat().st_size for p in blob_files(bundle)) - sum(
        len(blob_path(bundle / "oci", d).read_bytes()) for d in _manifest_digests(bundle))
    assert report.bytes_copied == unique, (report.bytes_copied, unique)
    for img in lock.images:
        repo, tag = img.ref.repository, img.ref.tag or ""
        assert mirror.manifest_digest(repo, tag) == img.digest
    multi = next(i for i in report.images if str(i.ref).endswith(MULTI))
    assert multi.platforms == 2  # the index and both platform manifests, whole
    again = fb.push_bundle(plan, bundle, lock)
    assert {i.status for i in again.images} == {Status.present} and again.bytes_copied == 0


def _manifest_digests(bundle: Path) -> set[str]:
    from airgap.bundle.store import stored_graph

    return {d for s in read_index(bundle) for d in stored_graph(bundle, s).manifests}


def test_a_mirror_holding_half_gets_only_the_rest(
        bundle: Path, lock: ImageLock, registry_factory: Callable[..., Registry],
        tmp_path: Path) -> None:
    mirror = registry_factory("mirror")
    plan = plan_for(mirror, tmp_path)
    half = ImageLock(lock.platforms, lock.images[:2])
    fb.push_bundle(plan, bundle, half)
    report = fb.push_bundle(plan, bundle, lock)
    status = {str(i.ref): i.status for i in report.images}
    assert [status[str(i.ref)] for i in lock.images[:2]] == [Status.present] * 2
    assert all(status[str(i.ref)] is Status.synced for i in lock.images[2:])
    # The shared base layer is in the mirror already: mounted, not sent again.
    assert all(i.bytes_copied == 0 for i in report.images[:2])
    assert report.ok


def test_an_interrupted_push_resumes_without_sending_finished_blobs_again(
        bundle: Path, lock: ImageLock, registry_factory: Callable[..., Registry],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = registry_factory("mirror")
    plan = plan_for(mirror, tmp_path)
    real = fb.upload_blob
    sent: list[list[str]] = [[], []]
    run = [0]

    def counting(client: RegistryClient, repo: str, digest: str, src: Path,
                 progress: object = None) -> int:
        if run[0] == 0 and len(sent[0]) == 2:
            raise AirgapError("simulated interruption (cable pulled)")
        sent[run[0]].append(digest)
        return real(client, repo, digest, src)

    monkeypatch.setattr(fb, "upload_blob", counting)
    with pytest.raises(AirgapError, match="simulated interruption"):
        fb.push_bundle(plan, bundle, lock, parallel=1)
    run[0] = 1
    report = fb.push_bundle(plan, bundle, lock, parallel=1)
    assert report.ok
    assert len(sent[0]) == 2 and not set(sent[0]) & set(sent[1]), sent
    for img in lock.images:
        assert mirror.manifest_digest(img.ref.repository, img.ref.tag or "") == img.digest


def test_the_side_load_archive_is_built_from_the_store_on_the_inside(
        bundle: Path, lock: ImageLock, tmp_path: Path) -> None:
    """No registry at all: one archive for the platform, each blob once, every image
    named, the platform manifest of the index as images.lock pins it."""
    from airgap.sideload import select_images
    from airgap.sideload.from_store import archive_from_store

    multi = next(s for s in read_index(bundle) if s.ref.endswith(MULTI))
    index = json.loads(blob_path(bundle / "oci", multi.digest).read_bytes())
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
                 for m in index["manifests"]}
    pinned = ImageLock(lock.platforms, [
        LockedImage(i.ref, i.digest, platforms=platforms if str(i.ref).endswith(MULTI) else {})
        for i in lock.images])
    images = select_images(pinned.refs(), "linux/amd64", lock=pinned)
    [rep] = archive_from_store(bundle, pinned, images, tmp_path / "out", "linux/amd64")
    assert rep.path == tmp_path / "out" / "images.tar" and rep.path.is_file()
    named = {i.name: i.digest for i in rep.images}
    assert set(named) == {i.ref.name for i in lock.images}
    assert named[next(i.ref.name for i in lock.images if str(i.ref).endswith(MULTI))] == \
        platforms["linux/amd64"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["images.tar"]  # no leftovers
