"""manifest.json round trip and verify_bundle on a bundle of real (test-built) snaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airgap.bundle import (
    BundleError,
    Manifest,
    SnapEntry,
    read_manifest,
    verify_bundle,
    write_manifest,
)
from airgap.errors import AirgapError
from airgap.snaps import hash_file, verify_snap
from airgap.snaps.trust import TrustStore
from tests.support.require import require_binary
from tests.support.snapbuild import make_snap_set, shared_authority


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, Path]:
    require_binary("mksquashfs")
    auth = shared_authority()
    root = auth.write_root(tmp_path / "root.assert")
    b = tmp_path / "bundle"
    snaps = make_snap_set(b / "snaps", auth)
    trust = TrustStore.from_file(root)
    entries = []
    for name, (snap, assertion) in snaps.items():
        v = verify_snap(snap, assertion, name, trust=trust)
        entries.append(
            SnapEntry(
                name,
                v.revision,
                "latest/stable",
                v.sha3_384,
                v.snap_id,
                f"snaps/{name}.snap",
                f"snaps/{name}.assert",
                v.chain_text,
            )
        )
    files = {p.relative_to(b).as_posix(): hash_file(p) for p in (b / "snaps").iterdir()}
    write_manifest(
        b,
        Manifest(
            files=files,
            snaps=entries,
            images=[],
            platforms=["linux/amd64"],
            tools={"k8s-airgap": "test"},
        ),
    )
    return b, root


def test_round_trip_and_verify(bundle: tuple[Path, Path]) -> None:
    b, root = bundle
    m = read_manifest(b)
    assert {s.name for s in m.snaps} == {"k8s", "core22", "snapd"}
    rep = verify_bundle(b, root)
    assert rep.ok and len(rep.rows) == 6
    assert {r.detail.split("chain: ")[-1] for r in rep.rows if r.kind == "snap"} == {
        "root -> store -> snap-revision"
    }


def test_manifest_entry_for_missing_file(bundle: tuple[Path, Path]) -> None:
    b, root = bundle
    (b / "snaps" / "snapd.assert").unlink()
    with pytest.raises(
        BundleError, match=r"snaps/snapd.assert: listed in manifest.json but missing"
    ) as exc:
        verify_bundle(b, root)
    assert not exc.value.report.ok


def test_manifest_revision_must_match_assertion(bundle: tuple[Path, Path]) -> None:
    b, root = bundle
    data = json.loads((b / "manifest.json").read_text())
    data["snaps"][0]["revision"] = "7"
    (b / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="manifest says revision 7"):
        verify_bundle(b, root)


def test_manifest_paths_cannot_escape(bundle: tuple[Path, Path]) -> None:
    b, _ = bundle
    data = json.loads((b / "manifest.json").read_text())
    data["files"]["../etc/passwd"] = {"sha256": "0", "size": 1}
    (b / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(AirgapError, match="points outside the bundle"):
        read_manifest(b)


def test_corrupt_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(AirgapError, match=r"manifest.json: not valid JSON"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"files": []}, r"files: expected an object mapping each path"),
        ({"files": {"a": {"size": "x", "sha256": "0"}}}, r"files\['a'\]: expected \{\"size\""),
        ({"snaps": [{"name": "k8s"}]}, r"snaps\[0\]: no 'revision': expected \{\"name\""),
        ({"images": ["docker.io/library/busybox:1"]}, r"images\[0\]: expected \{\"ref\""),
        ({"images": [{"ref": "Bad Ref", "digest": "sha256:0"}]}, r"images\[0\]\.ref: expected"),
    ],
)
def test_malformed_manifest_says_the_expected_shape(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    data: dict[str, object] = {"version": 1, "files": {}, "snaps": [], "images": []}
    (tmp_path / "manifest.json").write_text(json.dumps({**data, **change}))
    with pytest.raises(AirgapError, match=message) as info:
        read_manifest(tmp_path)
    assert "Error(" not in str(info.value)  # no Python exception leaks into the message
    assert info.value.resolution


def test_a_compressed_archive_in_the_bundle_is_named(bundle: tuple[Path, Path]) -> None:
    b, root = bundle
    (b / "images").mkdir()
    (b / "images" / "coredns.tar.gz").write_bytes(b"\x1f\x8b\x08\x00")
    with pytest.raises(BundleError) as err:
        verify_bundle(b, root)
    row = [r for r in err.value.report.rows if r.path == "images/coredns.tar.gz"]
    assert any("is compressed" in r.detail and "gunzip" in r.detail for r in row), row


def test_deploy_verifies_with_the_trusted_root_it_is_given(bundle: tuple[Path, Path]) -> None:
    from airgap.deploy import deploy
    from airgap.plan import parse_plan

    b, root = bundle
    plan = parse_plan(
        {"access": ["proxy"], "proxy": {"https": "http://10.20.0.2:3128"},
         "nodes": [{"name": "node-1", "address": "10.20.0.5"}]},
        source="airgap.yaml",
    )
    with pytest.raises(BundleError, match="root"):
        deploy(plan, {}, b)  # Canonical's root: the test authority's snaps are refused
    report = deploy(plan, {}, b, trusted_root=root)
    assert report.nodes == []
    report = deploy(plan, {}, b, check_signatures=False)
    assert report.nodes == []
