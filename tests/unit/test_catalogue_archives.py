"""The failure catalogue's side-load archive causes, caught before anything is installed:
verify fails on every file in images/ the runtime would skip, and on a bad archive with
the validator's own fix; prepare validates the archives before it writes the manifest,
so a bad one fails prepare, with that fix, and leaves no manifest behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.bundle import BundleError, read_manifest, verify_bundle, write_manifest
from airgap.bundle.prepare import prepare_bundle
from airgap.errors import AirgapError
from airgap.plan import Plan, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage, write_lock
from airgap.snaps import hash_file
from airgap.snaps.trust import TrustStore
from tests.support.require import require_binary
from tests.support.snapbuild import make_snap_set, shared_authority
from tests.unit.test_bundle_manifest import bundle  # noqa: F401 (fixture)
from tests.unit.test_sideload_fixtures import Img, oci_archive

PAUSE = "ghcr.io/canonical/k8s-snap/pause:3.10"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def relist(b: Path) -> None:
    """The manifest as prepare would write it now: every file listed, so only the
    archive rules can fail verify (not "not in manifest.json")."""
    m = read_manifest(b)
    files = {p.relative_to(b).as_posix(): hash_file(p)
             for p in sorted(b.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    write_manifest(b, type(m)(files, m.snaps, m.images, m.platforms, m.tools))


@pytest.mark.parametrize(("name", "why", "fix"), [
    ("coredns.tar.gz", "is compressed", "gunzip"),
    ("coredns.tgz", "is compressed", "(it writes coredns.tar)"),
    ("coredns.tar.zst", "is compressed", "zstd -d"),
    ("coredns.tar.loaded", "is not named *.tar", "Rename it to *.tar"),
    ("README", "is not named *.tar", "Rename it to *.tar"),
    ("nested/pause.tar", "is a directory", "Move its archives up"),
])
def test_verify_fails_on_every_file_the_runtime_would_skip(
        bundle: tuple[Path, Path], name: str, why: str, fix: str) -> None:  # noqa: F811
    b, root = bundle
    path = b / "images" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x1f\x8b\x08\x00")
    relist(b)
    with pytest.raises(BundleError) as err:
        verify_bundle(b, root)
    rows = err.value.report.failures
    skipped = f"images/{name.split('/')[0]}"
    assert [r.path for r in rows] == [skipped], rows  # nothing else is wrong
    assert why in rows[0].detail and fix in rows[0].detail
    assert "invoke sideload --bundle DIR" in rows[0].fix and "remove it" in rows[0].fix
    # The bundle's resolution is that fix, not "copy it again".
    assert fix in (err.value.resolution or "")
    assert "copy it again" not in (err.value.resolution or "")


def test_verify_gives_the_validators_fix_for_a_bad_archive(
        bundle: tuple[Path, Path]) -> None:  # noqa: F811
    b, root = bundle
    (b / "images").mkdir()
    # What `regctl image export --platform X` writes without --name (FACTS).
    oci_archive(b / "images" / "pause.tar", Img(f"{PAUSE}@sha256:{'a' * 64}"))
    relist(b)
    with pytest.raises(BundleError) as err:
        verify_bundle(b, root)
    [row] = err.value.report.failures
    assert row.path == "images/pause.tar" and "never found by kubelet" in row.detail
    assert row.fix == f"Re-export with --name {PAUSE} (`invoke sideload` does this)."
    resolution = err.value.resolution or ""
    assert f"images/pause.tar: Re-export with --name {PAUSE}" in resolution
    assert "copy it again" not in resolution and "validates the archives" in resolution


def test_a_damaged_file_and_a_bad_archive_get_both_fixes(
        bundle: tuple[Path, Path]) -> None:  # noqa: F811
    b, root = bundle
    (b / "images").mkdir()
    (b / "images" / "x.tgz").write_bytes(b"\x1f\x8b")
    relist(b)
    (b / "snaps" / "snapd.assert").write_bytes(b"changed")
    with pytest.raises(BundleError) as err:
        verify_bundle(b, root)
    resolution = err.value.resolution or ""
    assert "copy it again" in resolution and "images/x.tgz: Decompress it" in resolution


# ---- prepare ----------------------------------------------------------------------


def sideload_plan() -> Plan:
    return parse_plan({"access": ["sideload"],
                       "nodes": [{"name": "node-1", "address": "10.20.0.5"}]},
                      source="airgap.yaml")


@pytest.fixture
def connected(tmp_path: Path) -> tuple[Path, Path, TrustStore, Img]:
    """The snaps to prepare from (--from), a bundle holding an images.lock that already
    names the k8s snap's one image (so prepare keeps it: no registry), and that image."""
    require_binary("mksquashfs")
    require_binary("unsquashfs")
    auth = shared_authority()
    trust = TrustStore.from_file(auth.write_root(tmp_path / "root.assert"))
    src = tmp_path / "from"
    make_snap_set(src, auth, images=[PAUSE])
    b = tmp_path / "bundle"
    img = Img(PAUSE)
    oci_archive(tmp_path / "built.tar", img)  # fills img.digest
    write_lock(b / "images.lock", ImageLock(["linux/amd64"], [LockedImage(
        parse_image_ref(PAUSE), img.digest, MANIFEST_TYPE, {"linux/amd64": img.digest})]))
    return src, b, trust, img


def prepare(src: Path, b: Path, trust: TrustStore) -> Path:
    rep = prepare_bundle(sideload_plan(), b, from_dir=src, trust=trust, images=False)
    assert rep.images_action == "kept"
    return rep.manifest


def test_prepare_lists_a_valid_archive(
        connected: tuple[Path, Path, TrustStore, Img]) -> None:
    src, b, trust, img = connected
    (b / "images").mkdir()
    oci_archive(b / "images" / "pause.tar", img)
    prepare(src, b, trust)
    assert "images/pause.tar" in read_manifest(b).files


@pytest.mark.parametrize(("make", "brief", "fix"), [
    (lambda p, img: oci_archive(p / "pause.tar", Img(f"{PAUSE}@sha256:{'a' * 64}")),
     "a name with a digest is never found by kubelet", f"Re-export with --name {PAUSE}"),
    (lambda p, img: oci_archive(p / "pause.tar", Img(PAUSE, platform="linux/arm64")),
     "is for linux/arm64, the plan's nodes are linux/amd64", "Re-export with --platform"),
    (lambda p, img: oci_archive(p / "pause.tar", Img(PAUSE, layers=[b"other"])),
     "the image list pins", "Re-export from the lock (`invoke sideload --bundle DIR`)"),
    (lambda p, img: oci_archive(p / "pause.tar.gz", img, compress=True),
     "pause.tar.gz: is compressed", "gunzip"),
    (lambda p, img: oci_archive(p / "other.tar", Img("docker.io/library/nginx:1.27")),
     "image is named 'docker.io/library/nginx:1.27', the image list says",
     f"Re-export with --name {PAUSE}"),
])
def test_prepare_refuses_a_bad_archive_with_the_validators_fix_and_no_manifest(
        connected: tuple[Path, Path, TrustStore, Img], make: object, brief: str,
        fix: str) -> None:
    src, b, trust, img = connected
    prepare(src, b, trust)  # a complete bundle first: its manifest must go
    assert (b / "manifest.json").is_file()
    (b / "images").mkdir()
    make(b / "images", img)  # type: ignore[operator]
    with pytest.raises(AirgapError) as err:
        prepare(src, b, trust)
    assert brief in err.value.brief and fix in (err.value.resolution or "")
    assert "re-run `invoke prepare`" not in (err.value.resolution or "")
    assert not (b / "manifest.json").exists()


def test_prepare_refuses_an_image_in_two_archives(
        connected: tuple[Path, Path, TrustStore, Img]) -> None:
    src, b, trust, img = connected
    (b / "images").mkdir()
    oci_archive(b / "images" / "pause.tar", img)
    prepare(src, b, trust)
    oci_archive(b / "images" / "pause-again.tar", img)
    with pytest.raises(AirgapError, match=f"{PAUSE} is in both") as err:
        prepare(src, b, trust)
    assert "Keep one" in (err.value.resolution or "")
    assert not (b / "manifest.json").exists()
