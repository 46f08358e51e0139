"""The signing module's pure parts: the exact ssh-keygen argv, its output parsed, and the
errors raised before any command runs. (The real ssh-keygen: tests/integration.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.bundle import signing
from airgap.bundle.layout import Bundle
from airgap.bundle.signing import (
    check_novalidate_argv,
    check_signature,
    find_principals_argv,
    malformed_lines,
    parse_good,
    sign_argv,
    sign_manifest,
    signature_fingerprint,
    verify_argv,
)
from airgap.errors import AirgapError

# Made by `ssh-keygen -Y sign -n k8s-airgap` (OpenSSH 9.2) with an ed25519 key whose
# `ssh-keygen -l` fingerprint is FINGERPRINT.
SIGNATURE = """\
-----BEGIN SSH SIGNATURE-----
U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgxgBumFPaMqfjKhVY0pMFUImWdZ
+Y14FA5s5Pp+/hc+IAAAAKazhzLWFpcmdhcAAAAAAAAAAGc2hhNTEyAAAAUwAAAAtzc2gt
ZWQyNTUxOQAAAEBFqavR+Njaiqy5mLiy3BW/cExQajG1ccacAv0pYyUaiXhFyIqDEG9MO5
rYYt3zntc1pobQ6O78Rvu1Bm0MlD4D
-----END SSH SIGNATURE-----
"""
FINGERPRINT = "SHA256:q8Z4mmbhm+hAD3iNwj3z2GdwT9rHk5uHsru2LuaNIU8"


def test_the_argv_of_each_ssh_keygen_command() -> None:
    key, sig, allowed = Path("k/ops"), Path("b/manifest.json.sig"), Path("allowed")
    # -P "" is the empty passphrase: an encrypted key fails instead of prompting.
    assert sign_argv(key, Path("w/manifest.json")) == [
        "ssh-keygen", "-Y", "sign", "-P", "", "-n", "k8s-airgap", "-f", "k/ops",
        "w/manifest.json"]
    assert find_principals_argv(sig, allowed) == [
        "ssh-keygen", "-Y", "find-principals", "-s", "b/manifest.json.sig", "-f", "allowed"]
    assert check_novalidate_argv(sig) == [
        "ssh-keygen", "-Y", "check-novalidate", "-n", "k8s-airgap", "-s", "b/manifest.json.sig"]
    assert verify_argv(sig, allowed, "ops@site") == [
        "ssh-keygen", "-Y", "verify", "-f", "allowed", "-I", "ops@site", "-n", "k8s-airgap",
        "-s", "b/manifest.json.sig"]


def test_the_good_line_of_verify_and_of_check_novalidate_is_parsed() -> None:
    verify = f'Good "k8s-airgap" signature for ops@site with ED25519 key {FINGERPRINT}\n'
    assert parse_good(verify) == ("ops@site", FINGERPRINT)
    novalidate = f'Good "k8s-airgap" signature with RSA key {FINGERPRINT}\n'
    assert parse_good(novalidate) == ("", FINGERPRINT)


@pytest.mark.parametrize("stdout", [
    "",
    "Could not verify signature.\n",
    f'Good "git" signature for ops@site with ED25519 key {FINGERPRINT}\n',
    'Good "k8s-airgap" signature for ops@site with ED25519 key MD5:aa:bb\n',
])
def test_anything_else_is_not_a_good_line(stdout: str) -> None:
    assert parse_good(stdout) is None


def test_malformed_lines_are_named_and_blank_lines_are_not() -> None:
    allowed = Path("/site/allowed_signers")
    text = "# ours\n\nops@site ssh-ed25519 nope\nops@site ssh-ed25519 AAAA\n"
    stderr = ("/site/allowed_signers:2: missing key\n"
              "/site/allowed_signers:3: invalid key\n"
              "/elsewhere:1: invalid key\n"
              "No principal matched.\n")
    assert malformed_lines(stderr, allowed, text) == ["line 3: invalid key"]
    assert malformed_lines("No principal matched.\n", allowed, text) == []


def test_the_fingerprint_is_read_out_of_a_signature() -> None:
    assert signature_fingerprint(SIGNATURE) == FINGERPRINT


@pytest.mark.parametrize("text", [
    "",
    "not a signature\n",
    "-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----\n",
    "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQAAADM=\n-----END SSH SIGNATURE-----\n",
    "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n",
], ids=["empty", "text", "not-base64", "truncated-key", "magic-only"])
def test_a_broken_signature_has_no_fingerprint(text: str) -> None:
    assert signature_fingerprint(text) is None


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    Bundle(tmp_path).manifest.write_text("{}\n")
    return tmp_path


def test_no_signature_is_refused_naming_it_and_how_to_sign(bundle: Path) -> None:
    with pytest.raises(AirgapError) as info:
        check_signature(bundle, bundle / "allowed")
    err = info.value
    assert err.brief == f"{Bundle(bundle).signature}: the bundle is not signed"
    assert err.resolution is not None
    assert "invoke prepare --sign-key KEY" in err.resolution
    assert "--allow-unsigned" in err.resolution


def test_allow_unsigned_accepts_only_an_absent_signature_loudly(bundle: Path) -> None:
    check = check_signature(bundle, None, allow_unsigned=True)
    assert (check.signed, check.principal, check.fingerprint) == (False, "", "")
    assert check.detail.startswith("UNSIGNED: --allow-unsigned given")


def test_a_signature_without_allowed_signers_is_refused_naming_the_flag(bundle: Path) -> None:
    Bundle(bundle).signature.write_text(SIGNATURE)
    for allow_unsigned in (False, True):
        with pytest.raises(AirgapError) as info:
            check_signature(bundle, None, allow_unsigned=allow_unsigned)
        assert info.value.resolution is not None
        assert "--allowed-signers FILE" in info.value.resolution
        assert "ALLOWED SIGNERS" in info.value.resolution


@pytest.mark.parametrize("content", ["", "# only a comment\n\n"], ids=["empty", "comments"])
def test_an_allowed_signers_file_without_signers_is_refused(bundle: Path, content: str) -> None:
    Bundle(bundle).signature.write_text(SIGNATURE)
    allowed = bundle / "allowed"
    allowed.write_text(content)
    with pytest.raises(AirgapError, match="lists no signers") as info:
        check_signature(bundle, allowed)
    assert str(allowed) in info.value.brief


def test_a_missing_manifest_or_key_is_named_before_ssh_keygen_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("ssh-keygen must not run")

    monkeypatch.setattr(signing, "run", no_run)
    with pytest.raises(AirgapError) as info:
        sign_manifest(tmp_path, tmp_path / "key")
    assert info.value.brief == f"{Bundle(tmp_path).manifest}: the bundle has no manifest"
    Bundle(tmp_path).manifest.write_text("{}\n")
    with pytest.raises(AirgapError) as info:
        sign_manifest(tmp_path, tmp_path / "key")
    assert info.value.brief == f"{tmp_path / 'key'}: no such key file"
    assert not Bundle(tmp_path).signature.exists()
