"""The bundle's SSH signature with the real ssh-keygen (and ssh-agent, ssh-add): what
signs, what verifies, what is refused, and that a site can check it by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airgap.bundle.layout import Bundle
from airgap.bundle.signing import check_signature, sign_manifest, signature_fingerprint
from airgap.errors import AirgapError
from tests.support.require import require_binary

pytestmark = [pytest.mark.integration]

PRINCIPAL = "ops@site"


@dataclass(frozen=True)
class Key:
    private: Path

    @property
    def pub(self) -> Path:
        return self.private.with_name(self.private.name + ".pub")

    @property
    def fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-l", "-f", str(self.pub)], check=True,
                             capture_output=True, text=True).stdout
        return out.split()[1]

    def signer_line(self, principal: str = PRINCIPAL) -> str:
        return f"{principal} {self.pub.read_text().strip()}\n"


def make_key(path: Path, passphrase: str = "") -> Key:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "test",
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)
    return Key(path)


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own ssh-agent stays out of it unless a test starts one."""
    require_binary("ssh-keygen")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture
def key(tmp_path: Path) -> Key:
    return make_key(tmp_path / "keys" / "ops")


@pytest.fixture
def other(tmp_path: Path) -> Key:
    return make_key(tmp_path / "keys" / "other")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    root.mkdir()
    Bundle(root).manifest.write_text(json.dumps({"files": {"images.lock": "sha256:00"}}) + "\n")
    return root


@pytest.fixture
def allowed(tmp_path: Path, key: Key) -> Path:
    path = tmp_path / "allowed_signers"
    path.write_text(key.signer_line())
    return path


def error_of(fn: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(AirgapError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return str(info.value)


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b"sha256:00") + len("sha256:0")
    data[i] ^= 0x01  # "0" -> "1": still UTF-8, one byte different
    path.write_bytes(bytes(data))


def test_sign_then_check_returns_the_principal_and_fingerprint(
        bundle: Path, key: Key, allowed: Path) -> None:
    assert sign_manifest(bundle, key.private) == Bundle(bundle).signature
    check = check_signature(bundle, allowed)
    assert check.signed and check.principal == PRINCIPAL
    assert check.fingerprint == key.fingerprint
    assert check.detail == f"signed by {PRINCIPAL} ({key.fingerprint}), allowed by {allowed}"
    # Signing left nothing behind in the bundle: no copy, no temporary directory.
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "manifest.json.sig"]
    assert signature_fingerprint(Bundle(bundle).signature.read_text()) == key.fingerprint


def test_a_site_verifies_the_signature_by_hand_with_plain_ssh_keygen(
        bundle: Path, key: Key, allowed: Path) -> None:
    sign_manifest(bundle, key.private)
    with Bundle(bundle).manifest.open("rb") as manifest:
        proc = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", PRINCIPAL,
             "-n", "k8s-airgap", "-s", str(Bundle(bundle).signature)],
            stdin=manifest, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (f'Good "k8s-airgap" signature for {PRINCIPAL} with ED25519 '
                                   f"key {key.fingerprint}")


def test_one_flipped_byte_of_the_manifest_is_refused_naming_it(
        bundle: Path, key: Key, allowed: Path) -> None:
    sign_manifest(bundle, key.private)
    check_signature(bundle, allowed)
    flip_one_byte(Bundle(bundle).manifest)
    why = error_of(check_signature, bundle, allowed)
    assert f"{Bundle(bundle).manifest}: the signature does not match" in why
    assert "changed after signing" in why


def test_a_signature_by_a_key_not_allowed_is_refused_naming_its_fingerprint(
        bundle: Path, key: Key, other: Key, allowed: Path) -> None:
    sign_manifest(bundle, other.private)
    why = error_of(check_signature, bundle, allowed)
    assert f"signed by a key not in {allowed}: {other.fingerprint}" in why
    assert key.fingerprint not in why


def test_an_unknown_key_is_named_even_when_the_manifest_changed_too(
        bundle: Path, other: Key, allowed: Path) -> None:
    sign_manifest(bundle, other.private)
    flip_one_byte(Bundle(bundle).manifest)  # ssh-keygen check-novalidate now fails
    assert f"not in {allowed}: {other.fingerprint}" in error_of(check_signature, bundle, allowed)


def test_no_signature_is_refused_and_accepted_only_with_allow_unsigned(
        bundle: Path, allowed: Path) -> None:
    why = error_of(check_signature, bundle, allowed)
    assert f"{Bundle(bundle).signature}: the bundle is not signed" in why
    assert "--sign-key" in why and "--allow-unsigned" in why
    check = check_signature(bundle, None, allow_unsigned=True)
    assert not check.signed and check.principal == "" and check.fingerprint == ""
    assert check.detail.startswith("UNSIGNED: --allow-unsigned given")


def _tampered(bundle: Path, key: Key, other: Key) -> None:
    sign_manifest(bundle, key.private)
    flip_one_byte(Bundle(bundle).manifest)


def _unknown_key(bundle: Path, key: Key, other: Key) -> None:
    sign_manifest(bundle, other.private)


def _other_namespace(bundle: Path, key: Key, other: Key) -> None:
    subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "file", "-f", str(key.private),
                    str(Bundle(bundle).manifest)], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL)


def _garbage(bundle: Path, key: Key, other: Key) -> None:
    Bundle(bundle).signature.write_text("not a signature\n")


@pytest.mark.parametrize(("spoil", "expected"), [
    (_tampered, "changed after signing"),
    (_unknown_key, "signed by a key not in"),
    (_other_namespace, "another namespace"),
    (_garbage, "not an SSH signature"),
], ids=["tampered", "unknown-key", "other-namespace", "garbage"])
def test_a_present_but_bad_signature_is_refused_even_with_allow_unsigned(
        bundle: Path, key: Key, other: Key, allowed: Path, spoil: object, expected: str) -> None:
    spoil(bundle, key, other)  # type: ignore[operator]
    assert expected in error_of(check_signature, bundle, allowed, allow_unsigned=True)
    assert expected in error_of(check_signature, bundle, allowed)


def test_a_signed_bundle_without_allowed_signers_is_refused_naming_the_flag(
        bundle: Path, key: Key, tmp_path: Path) -> None:
    sign_manifest(bundle, key.private)
    why = error_of(check_signature, bundle, None)
    assert "no allowed signers were given" in why and "--allowed-signers FILE" in why
    assert "--allowed-signers FILE" in error_of(check_signature, bundle, None,
                                                allow_unsigned=True)
    missing = tmp_path / "nope"
    assert f"{missing}: no such allowed-signers file" in error_of(check_signature, bundle, missing)


def test_a_malformed_allowed_signers_file_is_refused_naming_the_file_and_line(
        bundle: Path, key: Key, tmp_path: Path) -> None:
    sign_manifest(bundle, key.private)
    bad = tmp_path / "bad_signers"
    bad.write_text(f"# ours\n{PRINCIPAL} ssh-ed25519 notbase64\n{key.signer_line()}")
    why = error_of(check_signature, bundle, bad)
    assert f"{bad}: malformed allowed-signers file" in why and "line 2: invalid key" in why
    # Blank lines and comments are not malformed (ssh-keygen 9.2 calls a blank line a
    # "missing key"); a principal list and options are read by ssh-keygen itself.
    fine = tmp_path / "fine_signers"
    fine.write_text(f"# ours\n\n  # indented\n{PRINCIPAL},backup@site namespaces=\"k8s-airgap\" "
                    f"{key.pub.read_text().strip()}\n\n")
    assert check_signature(bundle, fine).principal == PRINCIPAL


def test_an_allowed_signer_restricted_to_another_namespace_is_refused(
        bundle: Path, key: Key, tmp_path: Path) -> None:
    sign_manifest(bundle, key.private)
    restricted = tmp_path / "restricted"
    restricted.write_text(f'{PRINCIPAL} namespaces="git" {key.pub.read_text().strip()}\n')
    why = error_of(check_signature, bundle, restricted)
    assert "not permitted for use in signature namespace" in why


def test_signing_again_over_an_existing_signature_replaces_it(
        bundle: Path, key: Key, other: Key, allowed: Path) -> None:
    # ssh-keygen itself asks "Overwrite (y/n)?", reads no from /dev/null, and exits 0
    # leaving the old signature: signing must not go through that.
    sign_manifest(bundle, other.private)
    sign_manifest(bundle, key.private)
    assert check_signature(bundle, allowed).fingerprint == key.fingerprint
    sign_manifest(bundle, key.private)
    assert check_signature(bundle, allowed).fingerprint == key.fingerprint


def test_a_failed_signing_leaves_the_old_signature_and_no_temporary_files(
        bundle: Path, key: Key, allowed: Path, tmp_path: Path) -> None:
    sign_manifest(bundle, key.private)
    before = Bundle(bundle).signature.read_bytes()
    encrypted = make_key(tmp_path / "keys" / "enc", passphrase="secret")
    error_of(sign_manifest, bundle, encrypted.private)
    assert Bundle(bundle).signature.read_bytes() == before
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "manifest.json.sig"]
    check_signature(bundle, allowed)


def test_a_missing_manifest_or_key_is_named(bundle: Path, key: Key, tmp_path: Path) -> None:
    gone = tmp_path / "keys" / "gone"
    assert f"{gone}: no such key file" in error_of(sign_manifest, bundle, gone)
    Bundle(bundle).manifest.unlink()
    why = error_of(sign_manifest, bundle, key.private)
    assert f"{Bundle(bundle).manifest}: the bundle has no manifest" in why
    assert not Bundle(bundle).signature.exists()


def test_a_public_key_without_an_agent_or_private_half_is_refused(
        bundle: Path, key: Key) -> None:
    key.private.unlink()
    why = error_of(sign_manifest, bundle, key.pub)
    assert f"{key.pub}: ssh-agent does not hold this key" in why and "ssh-add" in why


def test_a_file_that_is_not_a_key_is_refused_naming_it(bundle: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("hello\n")
    assert f"{junk}: not an SSH key file" in error_of(sign_manifest, bundle, junk)


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ssh-agent on a short socket path (sun_path is 108 bytes)."""
    require_binary("ssh-agent")
    require_binary("ssh-add")
    where = Path(tempfile.mkdtemp(prefix="agent-"))
    sock = where / "sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(where, ignore_errors=True)


def test_a_key_held_only_by_ssh_agent_signs_through_its_public_half(
        bundle: Path, key: Key, allowed: Path, agent: Path) -> None:
    subprocess.run(["ssh-add", "-q", str(key.private)], check=True, stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=30)
    key.private.unlink()  # only the agent has the private half now
    sign_manifest(bundle, key.pub)
    check = check_signature(bundle, allowed)
    assert check.signed and check.fingerprint == key.fingerprint


_SIGN_ON_A_TERMINAL = textwrap.dedent("""
    import fcntl, os, sys, termios
    from pathlib import Path
    from airgap.bundle.signing import sign_manifest
    from airgap.errors import AirgapError
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # ssh-keygen would prompt on this /dev/tty
    try:
        sign_manifest(Path(sys.argv[1]), Path(sys.argv[2]))
    except AirgapError as exc:
        print(exc)
        sys.exit(3)
""")


@pytest.mark.timeout(60)
def test_an_encrypted_key_without_an_agent_fails_fast_even_on_a_terminal(
        bundle: Path, tmp_path: Path) -> None:
    encrypted = make_key(tmp_path / "keys" / "enc", passphrase="secret")
    # A new session whose controlling terminal nobody types into: a passphrase prompt on
    # /dev/tty would wait for ever (ssh-keygen prompts there even with stdin at /dev/null).
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "DISPLAY")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _SIGN_ON_A_TERMINAL, str(bundle),
                           str(encrypted.private)], env=env, start_new_session=True,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert time.monotonic() - started < 30
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"{encrypted.private}: the key is encrypted and ssh-agent does not hold it" \
        in proc.stdout
    assert f"ssh-add {encrypted.private}" in proc.stdout
    assert f"--sign-key {encrypted.private}.pub" in proc.stdout
    assert not Bundle(bundle).signature.exists()

