"""invoke prepare / invoke verify end to end: real squashfs snaps, assertions signed by
the tests' own root (--trusted-root), images on a real Distribution registry resolved
with regctl. The Snap Store is never contacted: every prepare runs with --from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from airgap.plan.defaults import DEFAULT_CHANNEL
from tests.support.ocibuild import make_test_images, regctl_for
from tests.support.registry import Registry
from tests.support.require import require_binary
from tests.support.snapbuild import TestAuthority, make_snap_set, shared_authority

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Setup:
    tmp: Path
    plan: Path
    from_dir: Path
    root: Path
    env: dict[str, str]
    registry: Registry
    auth: TestAuthority
    images: list[str]
    key: Path  # the bundle signing key (ssh-keygen), and who may sign
    allowed: Path

    def invoke(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=REPO,
            text=True,
            capture_output=True,
            env={**self.env, **(env or {})},
            timeout=300,
        )

    def prepare(
        self,
        bundle: Path,
        *extra: str,
        plan: Path | None = None,
        from_dir: Path | None = None,
        download: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`invoke prepare` with this setup's plan, snaps (--from) and trusted root;
        download=True leaves out --from, so that prepare runs `snap download`."""
        source = [] if download else ["--from", str(from_dir or self.from_dir)]
        return self.invoke(
            "prepare", "--plan", str(plan or self.plan), "--bundle", str(bundle), *source,
            "--trusted-root", str(self.root), "--sign-key", str(self.key), *extra, env=env,
        )

    def verify(self, bundle: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.invoke(
            "verify", "--bundle", str(bundle), "--trusted-root", str(self.root),
            "--allowed-signers", str(self.allowed), *extra
        )


@pytest.fixture
def setup(tmp_path: Path, registry_factory: Callable[..., Registry]) -> Setup:
    require_binary("mksquashfs")
    require_binary("unsquashfs")
    reg = registry_factory()
    make_test_images(
        reg, ["canonical/pause:3.10", "canonical/coredns:1.11.1"], workdir=tmp_path / "images"
    )
    k8s_images = [f"{reg.address}/canonical/pause:3.10", f"{reg.address}/canonical/coredns:1.11.1"]
    auth = shared_authority()
    from_dir = tmp_path / "downloads"
    make_snap_set(from_dir, auth, images=k8s_images)
    root = auth.write_root(tmp_path / "test-root.account-key.assert")
    plan = tmp_path / "airgap.yaml"
    plan.write_text(
        "access: [sideload]\n"
        "nodes:\n  - {name: node-1, address: 10.99.0.10, transport: local}\n"
        f"images:\n  extra: ['{reg.address}/test/multi:1']\n"
    )
    regctl = regctl_for(reg, tmp_path / "regctl")
    env = {**os.environ, **regctl.env, "COLUMNS": "250"}
    key = tmp_path / "signing-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tests", "-f", str(key)],
                   check=True, timeout=30)
    allowed = tmp_path / "allowed_signers"
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    allowed.write_text(f"tests@k8s-airgap {kind} {blob}\n")
    images = [*k8s_images, f"{reg.address}/test/multi:1"]
    return Setup(tmp_path, plan, from_dir, root, env, reg, auth, images, key, allowed)


def test_prepare_then_verify(setup: Setup) -> None:
    bundle = setup.tmp / "bundle"
    res = setup.prepare(bundle)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "root -> store -> snap-revision" in res.stdout
    names = sorted(p.name for p in (bundle / "snaps").iterdir())
    assert names == [
        "core22.assert",
        "core22.snap",
        "k8s.assert",
        "k8s.snap",
        "snapd.assert",
        "snapd.snap",
    ]
    manifest = json.loads((bundle / "manifest.json").read_text())
    store = {p.relative_to(bundle).as_posix() for p in (bundle / "oci").rglob("*") if p.is_file()}
    assert {"oci/oci-layout", "oci/index.json"} <= store and len(store) > 2
    assert set(manifest["files"]) == {f"snaps/{n}" for n in names} | {"images.lock"} | store
    assert (bundle / "manifest.json.sig").is_file()
    snaps = {s["name"]: s for s in manifest["snaps"]}
    assert snaps["k8s"]["revision"] == "100" and snaps["core22"]["revision"] == "101"
    assert snaps["k8s"]["channel"] == DEFAULT_CHANNEL
    assert snaps["snapd"]["chain"] == "root -> store -> snap-revision"
    assert len(snaps["k8s"]["sha3_384"]) == 64
    refs = {i["ref"]: i for i in manifest["images"]}
    assert sorted(refs) == sorted(setup.images)
    multi = refs[f"{setup.registry.address}/test/multi:1"]
    assert set(multi["platforms"]) == {"linux/amd64"} and multi["digest"].startswith("sha256:")
    assert manifest["tools"]["regctl"] == "v0.11.7"
    assert manifest["trusted_roots"] == [setup.auth.root.key_id]
    lock = json.loads((bundle / "images.lock").read_text())
    assert {i["ref"] for i in lock["images"]} == set(setup.images)
    assert {i["source"] for i in lock["images"] if "canonical" in i["ref"]} == {"k8s"}

    res = setup.verify(bundle)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "bundle verified" in res.stdout
    assert res.stdout.count("root -> store -> snap-revision") == 3

    assert "signed by tests@k8s-airgap" in res.stderr + res.stdout
    # Canonical's root does not sign the tests' snaps: without --trusted-root it fails.
    signers = ("--allowed-signers", str(setup.allowed))
    res = setup.invoke("verify", "--bundle", str(bundle), *signers)
    assert res.returncode == 1
    assert "neither a trusted root" in res.stdout + res.stderr
    res = setup.invoke("verify", "--bundle", str(bundle), "--no-signature-check", *signers)
    assert res.returncode == 0, res.stderr
    assert "WARNING: --no-signature-check" in res.stderr


def test_rerun_keeps_good_files_and_refetches_bad(setup: Setup) -> None:
    bundle = setup.tmp / "bundle"
    assert setup.prepare(bundle).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in (bundle / "snaps").iterdir()}
    snap = bundle / "snaps" / "core22.snap"
    data = bytearray(snap.read_bytes())
    data[100] ^= 0xFF
    snap.write_bytes(bytes(data))
    # stop the registry: an unchanged image set must not need it
    setup.registry.stop()
    res = setup.prepare(bundle)
    assert res.returncode == 0, res.stderr + res.stdout
    rows = {
        line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.count("│") > 5
    }
    assert "kept" in rows["k8s"] and "kept" in rows["snapd"] and "copied" in rows["core22"]
    after = {p.name: p.stat().st_mtime_ns for p in (bundle / "snaps").iterdir()}
    assert after["k8s.snap"] == before["k8s.snap"]
    assert after["core22.snap"] != before["core22.snap"]
    assert "images.lock (kept" in res.stdout
    assert setup.verify(bundle).returncode == 0


def _copy(setup: Setup, name: str) -> Path:
    bundle = setup.tmp / "bundle"
    if not (bundle / "manifest.json").exists():
        assert setup.prepare(bundle).returncode == 0
    dst = setup.tmp / name
    shutil.copytree(bundle, dst)
    return dst


def _fails(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"
    assert "Traceback" not in out
    return out


def test_verify_catches_each_kind_of_damage(setup: Setup) -> None:
    flipped = _copy(setup, "flipped")
    k8s = flipped / "snaps" / "k8s.snap"
    data = bytearray(k8s.read_bytes())
    data[len(data) // 2] ^= 0x01
    k8s.write_bytes(bytes(data))
    _fails(
        setup.verify(flipped),
        "snaps/k8s.snap",
        "content differs from snap-revision 100",
        "snap-sha3-384 is",
    )

    truncated = _copy(setup, "truncated")
    snapd = truncated / "snaps" / "snapd.snap"
    snapd.write_bytes(snapd.read_bytes()[:1000])
    _fails(setup.verify(truncated), "snaps/snapd.snap", "truncated: 1000 bytes")

    missing = _copy(setup, "missing")
    (missing / "snaps" / "core22.snap").unlink()
    _fails(setup.verify(missing), "snaps/core22.snap", "listed in manifest.json but missing")

    garbage = _copy(setup, "garbage")
    (garbage / "snaps" / "k8s.assert").write_bytes(b"\x00\x01garbage\n")
    _fails(setup.verify(garbage), "k8s.assert: assertion 1")

    extra = _copy(setup, "extra")
    (extra / "snaps" / "evil.snap").write_bytes(b"x")
    _fails(setup.verify(extra), "snaps/evil.snap", "not in manifest.json")

    nomanifest = _copy(setup, "nomanifest")
    (nomanifest / "manifest.json").unlink()
    _fails(setup.verify(nomanifest), "no manifest: the bundle is incomplete")


def _prepare_from(setup: Setup, name: str, assertion: bytes, snap: str = "k8s") -> str:
    src = setup.tmp / f"from-{name}"
    shutil.copytree(setup.from_dir, src)
    (src / f"{snap}.assert").write_bytes(assertion)
    bundle = setup.tmp / f"bundle-{name}"
    res = setup.prepare(bundle, from_dir=src)
    assert not (bundle / "manifest.json").exists()
    return _fails(res)


def test_prepare_refuses_inconsistent_assertions(setup: Setup) -> None:
    k8s = setup.from_dir / "k8s.snap"
    size = k8s.stat().st_size
    out = _prepare_from(setup, "size", setup.auth.assert_for(k8s, "k8s", size=size + 4096))
    assert f"snap-size {size + 4096} is wrong: k8s.snap has {size} bytes" in out
    out = _prepare_from(
        setup, "snapid", setup.auth.assert_for(k8s, "k8s", revision_snap_id="Z" * 32)
    )
    assert "snap-id mismatch" in out
    out = _prepare_from(setup, "norev", setup.auth.assert_for(k8s, "k8s", with_revision=False))
    assert "no snap-revision assertion" in out
    out = _prepare_from(setup, "wrongname", setup.auth.assert_for(k8s, "kube"))
    assert "snap-declaration is for snap 'kube', expected 'k8s'" in out
    other = TestAuthority.create()
    out = _prepare_from(setup, "otherroot", other.assert_for(k8s, "k8s"))
    assert "signature check failed" in out and "neither a trusted root" in out


def test_base_comes_from_snap_yaml(setup: Setup) -> None:
    src = setup.tmp / "from-core24"
    make_snap_set(src, setup.auth, images=setup.images[:1], base="core24")
    bundle = setup.tmp / "bundle24"
    res = setup.prepare(bundle, from_dir=src)
    assert res.returncode == 0, res.stderr + res.stdout
    assert (bundle / "snaps" / "core24.snap").is_file()
    assert not (bundle / "snaps" / "core22.snap").exists()


def test_without_snap_command_the_error_names_from(setup: Setup) -> None:
    bindir = setup.tmp / "bin"
    bindir.mkdir()
    path = f"{bindir}:{os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin"
    hidden = {"PATH": path}
    # a PATH where `snap` fails as it does without the store (never the real snap)
    fake = bindir / "snap"
    fake.write_text("#!/bin/sh\necho 'error: cannot download: store unreachable' >&2\nexit 1\n")
    fake.chmod(0o755)
    res = setup.prepare(setup.tmp / "b", download=True, env=hidden)
    _fails(res, "`snap download k8s` failed", "store unreachable", "invoke prepare --from DIR")


def test_unknown_image_is_a_clear_error(setup: Setup) -> None:
    plan = setup.tmp / "plan-missing.yaml"
    plan.write_text(setup.plan.read_text().replace("test/multi:1", "test/nothere:1"))
    res = setup.prepare(setup.tmp / "b", plan=plan)
    _fails(res, "cannot resolve image", "test/nothere:1")


def test_resolve_multi_platform_index(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    from airgap.bundle import resolve_image
    from airgap.plan.images import parse_image_ref

    for key in ("HOME", "REGCTL_CONFIG", "DOCKER_CONFIG"):
        monkeypatch.setenv(key, setup.env[key])
    ref = parse_image_ref(f"{setup.registry.address}/test/multi:1")
    locked = resolve_image(ref, ["linux/amd64", "linux/arm64"], "workload")
    assert locked.media_type == "application/vnd.oci.image.index.v1+json"
    assert set(locked.platforms) == {"linux/amd64", "linux/arm64"}
    assert len(set(locked.platforms.values())) == 2
    single = parse_image_ref(f"{setup.registry.address}/canonical/pause:3.10")
    from airgap.errors import AirgapError

    with pytest.raises(AirgapError, match="has no linux/arm64 variant"):
        resolve_image(single, ["linux/amd64", "linux/arm64"], "k8s")


def test_sideload_archives_are_validated_and_listed(setup: Setup) -> None:
    bundle = setup.tmp / "bundle"
    assert setup.prepare(bundle).returncode == 0
    res = setup.invoke("sideload", "--plan", str(setup.plan), "--bundle", str(bundle))
    assert res.returncode == 0, res.stderr + res.stdout
    tars = sorted((bundle / "images").glob("*.tar"))
    assert tars
    # archives written after prepare are not in the manifest until prepare runs again
    _fails(setup.verify(bundle), "not in manifest.json")
    res = setup.prepare(bundle)
    assert res.returncode == 0, res.stderr + res.stdout
    res = setup.verify(bundle)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "valid for the runtime" in res.stdout
    # a damaged archive fails the side-load validator even with a matching manifest entry
    tars[0].write_bytes(b"not a tar")
    _fails(setup.verify(bundle), f"images/{tars[0].name}", "archive")
    # ... and prepare refuses to list it: the validator's own message and fix, no manifest
    res = setup.prepare(bundle)
    assert res.returncode == 1
    out = res.stderr + res.stdout
    assert f"{tars[0]}: not a readable tar archive" in out and "Re-export the image" in out
    assert not (bundle / "manifest.json").exists()
