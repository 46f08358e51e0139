"""verify requires the snaps the procedure needs from the k8s snap itself (its base from
meta/snap.yaml, and snapd), not from the manifest's list, and checks the signature when
the air-gapped tasks ask it to."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airgap.bundle import BundleError, read_manifest, verify_bundle, write_manifest
from airgap.bundle.verify import SignerPolicy
from airgap.snaps import hash_file
from tests.unit.test_bundle_manifest import bundle  # noqa: F401 (fixture)


def drop_snap(b: Path, name: str) -> None:
    """A manifest that leaves one snap out, consistently (files and snaps)."""
    m = read_manifest(b)
    (b / "snaps" / f"{name}.snap").unlink()
    (b / "snaps" / f"{name}.assert").unlink()
    files = {k: v for k, v in m.files.items() if not k.startswith(f"snaps/{name}.")}
    snaps = [s for s in m.snaps if s.name != name]
    write_manifest(b, type(m)(files, snaps, m.images, m.platforms, m.tools))


@pytest.mark.parametrize("name", ["snapd", "core22"])
def test_a_bundle_without_a_snap_k8s_needs_is_refused(bundle: tuple[Path, Path],  # noqa: F811
                                                      name: str) -> None:
    b, root = bundle
    drop_snap(b, name)
    with pytest.raises(BundleError) as info:
        verify_bundle(b, trusted_root=root)
    rows = [r for r in info.value.report.failures if r.path == f"snaps/{name}.snap"]
    assert rows and "the bundle does not have it" in rows[0].detail, info.value.report.rows
    assert (name == "core22") == ("meta/snap.yaml" in rows[0].detail)


def test_the_signature_is_required_when_asked(bundle: tuple[Path, Path]) -> None:  # noqa: F811
    b, root = bundle
    with pytest.raises(BundleError, match="not signed"):
        verify_bundle(b, trusted_root=root, signers=SignerPolicy(None))
    rep = verify_bundle(b, trusted_root=root, signers=SignerPolicy(None, allow_unsigned=True))
    sig = [r for r in rep.rows if r.kind == "signature"]
    assert sig and sig[0].ok and "UNSIGNED" in sig[0].detail
    assert rep.signature is not None and not rep.signature.signed


def test_a_file_added_after_prepare_is_refused(bundle: tuple[Path, Path]) -> None:  # noqa: F811
    b, root = bundle
    shutil.copy(b / "snaps" / "k8s.assert", b / "snaps" / "extra.assert")
    with pytest.raises(BundleError, match=r"not in manifest\.json"):
        verify_bundle(b, trusted_root=root)
    assert hash_file(b / "snaps" / "extra.assert").size > 0
