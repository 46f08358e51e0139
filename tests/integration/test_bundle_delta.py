"""Delta bundles for real: prepare (real squashfs snaps, images on a real Distribution
registry, regctl pinning) a full bundle A, then B with one image more --since A's
manifest. B holds only the new image's blobs and the metadata; its prepare fetched no
blob A has (counted in the registry's access log); B verifies with --base A under a real
ssh-keygen signature, is refused against the wrong base naming both digests, and pack +
unpack with base reproduces the full bundle, which verifies on its own."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from airgap.bundle.layout import Bundle
from airgap.bundle.manifest import read_manifest
from airgap.bundle.prepare import PrepareReport, prepare_bundle
from airgap.bundle.signing import sign_manifest
from airgap.bundle.verify import SignerPolicy, verify_bundle
from airgap.errors import AirgapError
from airgap.plan import parse_plan
from airgap.snaps.trust import TrustStore
from tests.support.ocibuild import make_test_images, regctl_for
from tests.support.registry import Registry
from tests.support.require import require_binary
from tests.support.snapbuild import make_snap_set, shared_authority
from tests.unit.test_bundle_pack import tree

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
_PACK_UNPACK = """
import sys
from pathlib import Path
from airgap.bundle.pack import pack
from airgap.bundle.unpack import unpack
delta, parts, dest, base = map(Path, sys.argv[1:5])
pack(delta, parts, 256 * 1024)
unpack(parts, dest, base=base, consume=True)
"""
NEW = "test/new:1"
_BLOB_GET = re.compile(r'"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]{64}) HTTP')


@dataclass
class Site:
    tmp: Path
    registry: Registry
    from_dir: Path
    root: Path
    key: Path
    signers: SignerPolicy
    new_digest: str

    def prepare(self, name: str, extra: list[str], since: Path | None = None
                ) -> tuple[PrepareReport, set[str]]:
        """prepare_bundle into tmp/name, signed; and the blobs it GET from the registry."""
        plan = parse_plan({
            "access": ["sideload"],
            "nodes": [{"name": "node-1", "address": "10.99.0.10", "transport": "local"}],
            "images": {"extra": [f"{self.registry.address}/{i}" for i in extra]},
        }, source=str(self.tmp / f"{name}.yaml"), base_dir=self.tmp)
        log = self.registry.log_file
        seen = log.stat().st_size
        rep = prepare_bundle(plan, self.tmp / name, from_dir=self.from_dir,
                             trust=TrustStore.from_file(self.root), since=since)
        sign_manifest(self.tmp / name, self.key)
        with log.open("rb") as fh:
            fh.seek(seen)
            gets = set(_BLOB_GET.findall(fh.read().decode(errors="replace")))
        return rep, gets

    def verify(self, bundle: Path, base: Path | None = None) -> None:
        verify_bundle(bundle, self.root, signers=self.signers, base=base)


@pytest.fixture
def site(tmp_path: Path, registry_factory: Callable[..., Registry],
         monkeypatch: pytest.MonkeyPatch) -> Site:
    for tool in ("mksquashfs", "unsquashfs", "ssh-keygen"):
        require_binary(tool)
    reg = registry_factory()
    digests = make_test_images(reg, ["canonical/pause:3.10", NEW], workdir=tmp_path / "images")
    from_dir = tmp_path / "downloads"
    auth = shared_authority()
    make_snap_set(from_dir, auth, images=[f"{reg.address}/canonical/pause:3.10"])
    root = auth.write_root(tmp_path / "test-root.account-key.assert")
    for k, v in regctl_for(reg, tmp_path / "regctl").env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = tmp_path / "signing-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tests", "-f", str(key)],
                   check=True, timeout=30)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"ops@site {key.with_suffix('.pub').read_text()}")
    return Site(tmp_path, reg, from_dir, root, key, SignerPolicy(allowed), digests[NEW])


def blobs(root: Path) -> set[str]:
    store = Bundle(root).oci_dir / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in store.iterdir()} if store.is_dir() else set()


def listed_blobs(root: Path) -> set[str]:
    prefix = Bundle(root).rel(Bundle(root).oci_dir) + "/blobs/sha256/"
    return {f"sha256:{r.removeprefix(prefix)}" for r in read_manifest(root).files
            if r.startswith(prefix)}


def test_a_delta_carries_only_the_new_image_and_merges_into_the_full_bundle(
        site: Site) -> None:
    a, a_gets = site.prepare("a", ["test/multi:1"])
    assert a.delta is None and a_gets == blobs(site.tmp / "a") - _manifests(site.tmp / "a")
    site.verify(site.tmp / "a")

    b, b_gets = site.prepare("b", ["test/multi:1", NEW], since=Bundle(site.tmp / "a").manifest)
    a_dir, b_dir = site.tmp / "a", site.tmp / "b"
    new = listed_blobs(b_dir) - blobs(a_dir)
    # The new image: its manifest, its config and its own layer (the base layer is A's).
    assert len(new) == 3 and site.new_digest in new
    assert blobs(b_dir) == new
    shipped = {r for r in tree(b_dir)}
    store = Bundle(b_dir).rel(Bundle(b_dir).oci_dir)
    assert shipped - {f"{store}/blobs/sha256/{d.split(':')[1]}" for d in new} == {
        f"{store}/index.json", Bundle(b_dir).rel(Bundle(b_dir).lock),
        "manifest.json", "manifest.json.sig"}
    # No layer A holds was fetched (A's own prepare fetched every one of them: the count
    # sees them); the new image's layer and config were. Resolving the images GETs the
    # small config of each single-platform image, A's too, to read its platform.
    a_layers = _layers(a_dir)
    assert a_layers and a_layers <= a_gets
    assert not b_gets & a_layers, b_gets & a_layers
    assert new - {site.new_digest} <= b_gets
    assert b.store is not None
    assert a_layers & listed_blobs(b_dir) <= set(b.store.skipped) <= blobs(a_dir)
    assert b.delta is not None and sorted(b.delta.kept) == sorted(
        r for r in shipped if not r.startswith("manifest.json"))

    with pytest.raises(AirgapError, match=r"is a delta bundle against base manifest sha256"):
        site.verify(b_dir)
    site.verify(b_dir, base=a_dir)

    full, _ = site.prepare("full", ["test/multi:1", NEW])  # B as a full bundle
    with pytest.raises(AirgapError) as err:
        site.verify(b_dir, base=full.bundle)
    manifest_b = read_manifest(b_dir)
    assert manifest_b.base is not None
    assert manifest_b.base.manifest_sha256 in err.value.brief
    assert _sha256(Bundle(full.bundle).manifest) in err.value.brief

    parts, dest = site.tmp / "media", site.tmp / "inside" / "bundle"
    # In a child process, as tests/integration/test_bundle_pack_media.py does: the
    # writeback helper looks libc up with ctypes.util, which runs ldconfig.
    subprocess.run([sys.executable, "-c", _PACK_UNPACK, str(b_dir), str(parts), str(dest),
                    str(a_dir)], check=True, timeout=300, cwd=REPO)
    assert not list(parts.glob("*.part-*"))  # consumed
    assert _without_manifest(tree(dest)) == _without_manifest(tree(full.bundle))
    assert Bundle(dest).manifest.read_bytes() == Bundle(b_dir).manifest.read_bytes()
    site.verify(dest)  # the merged bundle is a full bundle: no base needed


def _manifests(root: Path) -> set[str]:
    from airgap.bundle.store import read_index, stored_graph

    return {d for s in read_index(root) for d in stored_graph(root, s).manifests}


def _layers(root: Path) -> set[str]:
    import json

    from airgap.bundle.store import blob_path, read_index, stored_graph

    out = set()
    for s in read_index(root):
        for d in stored_graph(root, s).manifests:
            doc = json.loads(blob_path(Bundle(root).oci_dir, d).read_bytes())
            out |= {str(x["digest"]) for x in doc.get("layers", [])}
    return out


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _without_manifest(files: dict[str, bytes]) -> dict[str, bytes]:
    return {r: d for r, d in files.items() if not r.startswith("manifest.json")}
