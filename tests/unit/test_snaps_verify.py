"""verify_snap on real squashfs snaps: each way a snap can disagree with its assertions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airgap.snaps import (
    SnapError,
    download_snap,
    find_local_snap,
    hash_file,
    snap_images,
    snap_meta,
    verify_snap,
)
from airgap.snaps.assertions import parse_stream
from airgap.snaps.trust import TrustStore
from tests.support.require import require_binary
from tests.support.snapbuild import TestAuthority, build_snap, shared_authority


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, TestAuthority, TrustStore]:
    require_binary("mksquashfs")
    require_binary("unsquashfs")
    auth = shared_authority()
    snap = build_snap(
        tmp_path, "k8s", base="core22", images=["ghcr.io/canonical/k8s-snap/pause:3.10"], pad=20_000
    )
    trust = TrustStore.from_assertions(parse_stream(auth.root_assertion))
    return snap, auth, trust


def _write(tmp: Path, data: bytes) -> Path:
    p = tmp / "k8s.assert"
    p.write_bytes(data)
    return p


def test_good_snap_verifies_with_chain(
    built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path
) -> None:
    snap, auth, trust = built
    v = verify_snap(snap, _write(tmp_path, auth.assert_for(snap, "k8s")), "k8s", trust=trust)
    assert v.revision == "42" and v.size == snap.stat().st_size
    assert v.chain_text == "root -> store -> snap-revision"
    assert v.sha256 == hash_file(snap).sha256
    assert snap_meta(snap).base == "core22"
    assert [str(i) for i in snap_images(snap)] == ["ghcr.io/canonical/k8s-snap/pause:3.10"]


def test_flipped_byte(built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path) -> None:
    snap, auth, trust = built
    a = _write(tmp_path, auth.assert_for(snap, "k8s"))
    data = bytearray(snap.read_bytes())
    data[-1] ^= 0x01
    snap.write_bytes(bytes(data))
    with pytest.raises(SnapError, match="content differs from snap-revision 42: snap-sha3-384 is"):
        verify_snap(snap, a, "k8s", trust=trust)


def test_truncated(built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path) -> None:
    snap, auth, trust = built
    a = _write(tmp_path, auth.assert_for(snap, "k8s"))
    snap.write_bytes(snap.read_bytes()[:4096])
    with pytest.raises(SnapError, match="truncated: 4096 bytes, snap-revision 42 says snap-size"):
        verify_snap(snap, a, "k8s", trust=trust)


def test_wrong_snap_size(built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path) -> None:
    snap, auth, trust = built
    size = snap.stat().st_size
    a = _write(tmp_path, auth.assert_for(snap, "k8s", size=size - 1))
    with pytest.raises(
        SnapError, match=f"snap-size {size - 1} is wrong: k8s.snap has {size} bytes"
    ):
        verify_snap(snap, a, "k8s", trust=trust)


def test_snap_id_mismatch(built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path) -> None:
    snap, auth, trust = built
    a = _write(tmp_path, auth.assert_for(snap, "k8s", revision_snap_id="A" * 32))
    with pytest.raises(SnapError, match="snap-id mismatch: snap-declaration of 'k8s' has snap-id"):
        verify_snap(snap, a, "k8s", trust=trust)


def test_missing_snap_revision(
    built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path
) -> None:
    snap, auth, trust = built
    a = _write(tmp_path, auth.assert_for(snap, "k8s", with_revision=False))
    with pytest.raises(SnapError, match="no snap-revision assertion"):
        verify_snap(snap, a, "k8s", trust=trust)


def test_garbage_assertion(built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path) -> None:
    snap, _, trust = built
    a = _write(tmp_path, b"<html>502 Bad Gateway</html>\n")
    with pytest.raises(
        SnapError, match=r"k8s.assert: assertion 1: no blank line after the headers"
    ):
        verify_snap(snap, a, "k8s", trust=trust)


def test_wrong_snap_name(built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path) -> None:
    snap, auth, trust = built
    a = _write(tmp_path, auth.assert_for(snap, "core22"))
    with pytest.raises(SnapError, match="snap-declaration is for snap 'core22', expected 'k8s'"):
        verify_snap(snap, a, "k8s", trust=trust)


def test_no_signature_check_still_checks_content(
    built: tuple[Path, TestAuthority, TrustStore], tmp_path: Path
) -> None:
    snap, _, _ = built
    other = TestAuthority.create()
    a = _write(tmp_path, other.assert_for(snap, "k8s"))
    v = verify_snap(snap, a, "k8s", trust=None)
    assert v.chain_text.startswith("NOT CHECKED")
    with pytest.raises(SnapError, match=r"signature check failed: .*neither a trusted root"):
        verify_snap(snap, a, "k8s", trust=TrustStore.default())


def test_find_local_snap_accepts_snap_download_names(tmp_path: Path) -> None:
    (tmp_path / "k8s_1234.snap").write_bytes(b"x")
    (tmp_path / "k8s_1234.assert").write_bytes(b"x")
    (tmp_path / "k8s-extra.snap").write_bytes(b"x")
    assert find_local_snap(tmp_path, "k8s")[0].name == "k8s_1234.snap"
    (tmp_path / "k8s.snap").write_bytes(b"x")
    with pytest.raises(SnapError, match="several snaps for k8s"):
        find_local_snap(tmp_path, "k8s")
    with pytest.raises(SnapError, match=r"no core22.snap"):
        find_local_snap(tmp_path, "core22")


def test_missing_snap_command_points_at_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SnapError, match="`snap` command is not installed") as exc:
        download_snap("k8s", "1.32-classic/stable", tmp_path / "out")
    assert "invoke prepare --from DIR" in str(exc.value)


def test_failing_snap_download_points_at_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "snap"
    fake.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$0")/argv"\n'
        "echo 'error: unable to contact snap store' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(SnapError, match="`snap download core22` failed") as exc:
        download_snap("core22", "latest/stable", tmp_path / "out")
    assert "unable to contact snap store" in str(exc.value)
    assert "--from" in str(exc.value)
    assert (tmp_path / "argv").read_text().split() == [
        "download",
        "core22",
        "--channel=latest/stable",
        "--basename=core22",
        f"--target-directory={tmp_path / 'out'}",
    ]


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_hash_file_two_digests_in_parallel_match_hashlib(tmp_path: Path, size: int) -> None:
    import base64
    import hashlib

    from airgap.snaps import hash_file

    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    got = hash_file(path, sha3=True, chunk=4096)
    want3 = base64.urlsafe_b64encode(hashlib.sha3_384(data).digest()).rstrip(b"=").decode()
    assert (got.size, got.sha256, got.sha3_384) == (size, hashlib.sha256(data).hexdigest(), want3)
    assert hash_file(path, chunk=4096).sha256 == got.sha256
