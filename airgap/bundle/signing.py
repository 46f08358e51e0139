"""The bundle's SSH signature: ``ssh-keygen -Y sign`` over manifest.json (which covers
every other file), namespace ``k8s-airgap``, checked on the air-gapped side against an
ALLOWED SIGNERS file (ssh-keygen(1)).

ssh-keygen is always given ``-P ""`` (the empty passphrase, not a secret): with it an
encrypted key fails at once instead of prompting on the terminal, which it would do
even with stdin at /dev/null. A key ssh-agent holds is used through the agent.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from airgap.bundle.layout import Bundle
from airgap.errors import AirgapError, CommandError
from airgap.fileio import write_atomic
from airgap.process import run

SIGNATURE_NAMESPACE = "k8s-airgap"
SSH_KEYGEN = "ssh-keygen"
SIGN_TIMEOUT_S = 120.0  # an agent-held hardware key may wait for a touch
CHECK_TIMEOUT_S = 60.0
ALLOWED_SIGNERS_HELP = ("ssh-keygen's ALLOWED SIGNERS format, see ssh-keygen(1): a line per key, "
                        "`PRINCIPAL KEYTYPE BASE64`, e.g. `ops@site ssh-ed25519 AAAA...`")
_KEYGEN_FIX = ("ssh-keygen comes with openssh-client (apt-get install openssh-client); if it "
               "timed out waiting for a hardware key, touch the key and try again.")
_RESIGN = "Sign it on the connected side with `invoke prepare --sign-key KEY`."
_GOOD = re.compile(r'^Good "(?P<ns>[^"]*)" signature (?:for (?P<principal>.+?) )?'
                   r"with (?P<type>\S+) key (?P<fingerprint>SHA256:\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class SignatureCheck:
    """What check_signature found; ``detail`` is one line for a report table."""

    signed: bool
    principal: str
    fingerprint: str
    detail: str


# --- argv (pure) ---------------------------------------------------------------------

def sign_argv(key: Path, file: Path) -> list[str]:
    return [SSH_KEYGEN, "-Y", "sign", "-P", "", "-n", SIGNATURE_NAMESPACE, "-f", str(key),
            str(file)]


def find_principals_argv(signature: Path, allowed: Path) -> list[str]:
    return [SSH_KEYGEN, "-Y", "find-principals", "-s", str(signature), "-f", str(allowed)]


def check_novalidate_argv(signature: Path) -> list[str]:
    return [SSH_KEYGEN, "-Y", "check-novalidate", "-n", SIGNATURE_NAMESPACE,
            "-s", str(signature)]


def verify_argv(signature: Path, allowed: Path, principal: str) -> list[str]:
    return [SSH_KEYGEN, "-Y", "verify", "-f", str(allowed), "-I", principal,
            "-n", SIGNATURE_NAMESPACE, "-s", str(signature)]


# --- ssh-keygen's output (pure) --------------------------------------------------------

def parse_good(stdout: str) -> tuple[str, str] | None:
    """(principal, fingerprint) from ssh-keygen's `Good "NS" signature ...` line, or None;
    the principal is "" for check-novalidate, which names none."""
    m = _GOOD.search(stdout)
    if m is None or m.group("ns") != SIGNATURE_NAMESPACE:
        return None
    return m.group("principal") or "", m.group("fingerprint")


def malformed_lines(stderr: str, allowed: Path, text: str) -> list[str]:
    """ssh-keygen's `FILE:N: problem` complaints about the allowed-signers file, blank
    lines left out (ssh-keygen 9.2 reports a blank line as `missing key`)."""
    lines = text.splitlines()
    pattern = re.compile(rf"^{re.escape(str(allowed))}:(\d+): (.+)$", re.MULTILINE)
    out = []
    for m in pattern.finditer(stderr):
        number = int(m.group(1))
        if 0 < number <= len(lines) and not lines[number - 1].strip():
            continue
        out.append(f"line {number}: {m.group(2)}")
    return out


def signature_fingerprint(armored: str) -> str | None:
    """The SHA256 fingerprint of the public key inside an armored SSHSIG (PROTOCOL.sshsig:
    "SSHSIG", uint32 version, string publickey, ...), or None if it is not one."""
    body = "".join(ln.strip() for ln in armored.splitlines() if not ln.startswith("-----"))
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not blob.startswith(b"SSHSIG") or len(blob) < 14:
        return None
    size = int.from_bytes(blob[10:14], "big")
    key = blob[14:14 + size]
    if size == 0 or len(key) != size:
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=")


# --- signing ---------------------------------------------------------------------------

def sign_manifest(bundle: Path, key: Path) -> Path:
    """Sign the bundle's manifest.json with key (a private key, or the .pub of a key
    ssh-agent holds); manifest.json.sig is replaced atomically or left as it was."""
    layout = Bundle(bundle)
    _require_file(layout.manifest, "the bundle has no manifest",
                  "Run `invoke prepare` first: it writes manifest.json last.")
    _require_file(key, "no such key file",
                  "Pass --sign-key an SSH private key, or the .pub of a key ssh-agent holds "
                  "(`ssh-add -L` lists them).")
    made_partial = not layout.partial_dir.exists()
    layout.partial_dir.mkdir(parents=True, exist_ok=True)
    work = Bundle(Path(tempfile.mkdtemp(prefix="sign-", dir=layout.partial_dir)))
    try:
        shutil.copyfile(layout.manifest, work.manifest)
        proc = _keygen(sign_argv(key, work.manifest), SIGN_TIMEOUT_S)
        if proc.returncode != 0 or not work.signature.is_file():
            raise _sign_error(key, proc)
        write_atomic(layout.signature, work.signature.read_bytes())
    finally:
        shutil.rmtree(work.root, ignore_errors=True)
        if made_partial:
            with contextlib.suppress(OSError):
                layout.partial_dir.rmdir()
    return layout.signature


def _sign_error(key: Path, proc: subprocess.CompletedProcess[str]) -> AirgapError:
    private = key.with_suffix("") if key.suffix == ".pub" else key
    if "incorrect passphrase" in proc.stderr:
        return AirgapError(
            f"{key}: the key is encrypted and ssh-agent does not hold it",
            details=proc.stderr.strip(),
            resolution=f"Load it into ssh-agent (`ssh-add {private}`) and pass its public key: "
                       f"--sign-key {private}.pub. k8s-airgap never asks for a passphrase.")
    if "No private key found" in proc.stderr:
        return AirgapError(
            f"{key}: ssh-agent does not hold this key and its private half is not next to it",
            details=proc.stderr.strip(),
            resolution=f"`ssh-add {private}` in the ssh-agent whose SSH_AUTH_SOCK this shell "
                       "has (`ssh-add -l` lists its keys), or pass the private key file.")
    if "Couldn't load public key" in proc.stderr:
        return AirgapError(
            f"{key}: not an SSH key file", details=proc.stderr.strip(),
            resolution="Pass --sign-key an OpenSSH private key (ssh-keygen -t ed25519) or "
                       "the .pub of a key ssh-agent holds.")
    return CommandError(proc.args, proc.returncode, proc.stdout, proc.stderr,
                        brief=f"ssh-keygen could not sign with {key}",
                        resolution="Read ssh-keygen's message above; check the key with "
                                   f"`ssh-keygen -l -f {key}`.")


# --- checking --------------------------------------------------------------------------

def check_signature(bundle: Path, allowed_signers: Path | None, *,
                    allow_unsigned: bool = False) -> SignatureCheck:
    """Check manifest.json.sig against allowed_signers. allow_unsigned accepts only an
    absent signature, never one that is present and fails."""
    layout = Bundle(bundle)
    if not layout.signature.exists():
        return _unsigned(layout, allow_unsigned)
    _require_file(layout.manifest, "the bundle has a signature but no manifest",
                  "Copy the whole bundle directory again from the connected side.")
    if allowed_signers is None:
        raise AirgapError(
            f"{layout.signature}: the bundle is signed, and no allowed signers were given",
            resolution=f"Pass --allowed-signers FILE, in {ALLOWED_SIGNERS_HELP}.")
    text = _allowed_text(allowed_signers)
    principal = _find_principal(layout, allowed_signers, text)
    return _verify(layout, allowed_signers, principal)


def _unsigned(layout: Bundle, allow_unsigned: bool) -> SignatureCheck:
    if not allow_unsigned:
        raise AirgapError(
            f"{layout.signature}: the bundle is not signed",
            resolution=f"{_RESIGN} Or pass --allow-unsigned to accept it knowingly.")
    return SignatureCheck(
        signed=False, principal="", fingerprint="",
        detail="UNSIGNED: --allow-unsigned given; nothing proves who made this bundle")


def _allowed_text(allowed: Path) -> str:
    _require_file(allowed, "no such allowed-signers file",
                  f"Pass --allowed-signers a file in {ALLOWED_SIGNERS_HELP}.")
    try:
        text = allowed.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AirgapError(f"{allowed}: cannot read the allowed-signers file: {exc}",
                          resolution=f"Write it as text, in {ALLOWED_SIGNERS_HELP}.") from exc
    if not any(ln.strip() and not ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise AirgapError(f"{allowed}: the allowed-signers file lists no signers",
                          resolution=f"Add a line per trusted key, in {ALLOWED_SIGNERS_HELP}.")
    return text


def _find_principal(layout: Bundle, allowed: Path, text: str) -> str:
    proc = _keygen(find_principals_argv(layout.signature, allowed), CHECK_TIMEOUT_S)
    if "Couldn't parse signature" in proc.stderr:
        raise AirgapError(
            f"{layout.signature}: not an SSH signature (ssh-keygen cannot read it)",
            details=proc.stderr.strip(), resolution=f"Do not use this bundle. {_RESIGN}")
    bad = malformed_lines(proc.stderr, allowed, text)
    if bad:
        raise AirgapError(f"{allowed}: malformed allowed-signers file", details="\n".join(bad),
                          resolution=f"Fix the lines named; the file is in {ALLOWED_SIGNERS_HELP}.")
    principals = proc.stdout.split()
    if proc.returncode != 0 or not principals:
        raise _unknown_key(layout, allowed)
    return principals[0]


def _unknown_key(layout: Bundle, allowed: Path) -> AirgapError:
    fingerprint = _signing_fingerprint(layout) or "(unreadable key)"
    return AirgapError(
        f"{layout.signature}: signed by a key not in {allowed}: {fingerprint}",
        resolution=f"Do not use this bundle unless {fingerprint} is a key you trust; then add "
                   f"a line for it to {allowed}, in {ALLOWED_SIGNERS_HELP}.")


def _signing_fingerprint(layout: Bundle) -> str | None:
    """The signer's fingerprint: from ssh-keygen when the signature is good, else read
    out of the signature itself (the manifest may have changed too)."""
    proc = _keygen(check_novalidate_argv(layout.signature), CHECK_TIMEOUT_S,
                   stdin=_manifest_bytes(layout))
    good = parse_good(proc.stdout) if proc.returncode == 0 else None
    if good is not None:
        return good[1]
    return signature_fingerprint(layout.signature.read_text(errors="replace"))


def _verify(layout: Bundle, allowed: Path, principal: str) -> SignatureCheck:
    proc = _keygen(verify_argv(layout.signature, allowed, principal), CHECK_TIMEOUT_S,
                   stdin=_manifest_bytes(layout))
    if proc.returncode != 0:
        raise AirgapError(
            f"{layout.manifest}: the signature does not match: manifest.json was changed after "
            f"signing, or was signed for another namespace than {SIGNATURE_NAMESPACE!r}",
            details=(proc.stderr or proc.stdout).strip(),
            resolution=f"Do not use this bundle; copy it again from the connected side. "
                       f"{_RESIGN}")
    good = parse_good(proc.stdout)
    if good is None:
        raise CommandError(proc.args, proc.returncode, proc.stdout, proc.stderr,
                           brief="ssh-keygen -Y verify passed but its output is not understood",
                           resolution="Report this with the output above (ssh -V).")
    fingerprint = good[1]
    return SignatureCheck(signed=True, principal=principal, fingerprint=fingerprint,
                          detail=f"signed by {principal} ({fingerprint}), allowed by {allowed}")


def _manifest_bytes(layout: Bundle) -> bytes:
    data = layout.manifest.read_bytes()
    try:
        data.decode()  # process.run passes input as text
    except UnicodeDecodeError as exc:
        raise AirgapError(
            f"{layout.manifest}: not UTF-8 text: it was changed after signing or is corrupt",
            resolution="Do not use this bundle; copy it again from the connected side.") from exc
    return data


# --- shared ----------------------------------------------------------------------------

def _keygen(argv: list[str], timeout: float, stdin: bytes | None = None
            ) -> subprocess.CompletedProcess[str]:
    return run(argv, input=stdin, check=False, timeout=timeout, resolution=_KEYGEN_FIX)


def _require_file(path: Path, what: str, resolution: str) -> None:
    if not path.is_file():
        raise AirgapError(f"{path}: {what}", resolution=resolution)
