"""Stand-in snaps for the lab: real squashfs snaps with assertions in snapd's wire format.

The k8s snap cannot be downloaded on machines with no Snap Store access, yet the
product's prepare and verify must still run for real in the lab. So the lab builds
k8s (with images.txt and meta/snap.yaml naming its base), its base and snapd as
squashfs files with mksquashfs, and signs their assertions with a lab-generated
authority exactly as the store signs (OpenPGP v4 signature packets, RSA + SHA-512,
0x01 format byte), under a root account-key passed to prepare/verify as the trusted
root. Every report that uses them says so: they prove the bundle path, not the snap.
The tests reuse this module (tests/support/snapbuild.py). Nothing here talks to the
Snap Store.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from airgap import process
from airgap.snaps.assertions import HeaderValue, b64url_nopad, encode_headers
from airgap.snaps.openpgp import SNAPD_KEY_TIME, packet_header

ROOT_SINCE = "2020-01-01T00:00:00.0Z"
TIMESTAMP = "2024-05-01T12:00:00.123456Z"
SNAP_TIME = 1767225600  # 2026-01-01T00:00:00Z: every file and the filesystem of each built snap


def _mpi(value: int) -> bytes:
    """An MPI with its exact bit length, as Go and gpg write a public key's numbers."""
    bits = value.bit_length()
    return struct.pack(">H", bits) + value.to_bytes((bits + 7) // 8, "big")


def _signature_mpi(raw: bytes) -> bytes:
    """An RSA signature as Go's OpenPGP code (snapd, the Snap Store) writes it.

    The bit count is the key's full length (8 x the signature's bytes) and the value
    keeps its leading zero bytes, whatever its own bit length: about half of all
    real store signatures are shorter than the key, so the lab's authority produces
    them too and every lab run exercises that path.
    """
    return struct.pack(">H", 8 * len(raw)) + raw


def _new_packet(tag: int, body: bytes) -> bytes:
    return packet_header(tag, len(body)) + body


def _wrap(text: str, width: int = 76) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


@dataclass
class SigningKey:
    """An RSA key as snapd sees it: account-key body, its sha3-384 id, its OpenPGP id."""

    __test__ = False  # not a pytest test class (tests import it as SigningKey)

    name: str
    account_id: str
    private: rsa.RSAPrivateKey
    created: int = SNAPD_KEY_TIME  # snapd derives ids at this time (airgap.snaps.openpgp)

    @property
    def packet(self) -> bytes:
        nums = self.private.public_key().public_numbers()
        body = b"\x04" + struct.pack(">I", self.created) + b"\x01" + _mpi(nums.n) + _mpi(nums.e)
        return _new_packet(6, body)

    @property
    def blob(self) -> bytes:
        return b"\x01" + self.packet

    @property
    def key_id(self) -> str:
        return b64url_nopad(hashlib.sha3_384(self.blob).digest())

    @property
    def openpgp_id(self) -> bytes:
        body = self.packet[3:] if self.packet[1] >= 192 else self.packet[2:]
        return hashlib.sha1(b"\x99" + struct.pack(">H", len(body)) + body).digest()[-8:]

    def sign(self, content: bytes, *, issuer: bool = True, created: int | None = None) -> bytes:
        """0x01 + an OpenPGP v4 binary-document signature packet (RSA, SHA-512)."""
        hashed_sub = bytes([5, 2]) + struct.pack(">I", created or int(time.time()))
        trailer = bytes([4, 0x00, 1, 10]) + struct.pack(">H", len(hashed_sub)) + hashed_sub
        digest = hashlib.sha512(
            content + trailer + b"\x04\xff" + struct.pack(">I", len(trailer))
        ).digest()
        raw = self.private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA512()))
        unhashed = bytes([9, 16]) + self.openpgp_id if issuer else b""
        body = (
            trailer
            + struct.pack(">H", len(unhashed))
            + unhashed
            + digest[:2]
            + _signature_mpi(raw)
        )
        return b"\x01" + _new_packet(2, body)


def new_key(name: str, account_id: str, bits: int = 2048) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return SigningKey(name, account_id, key)


def encode_assertion(
    headers: Mapping[str, HeaderValue],
    signer: SigningKey,
    body: bytes = b"",
    *,
    signature: bytes | None = None,
) -> bytes:
    """One assertion in the wire format; body-length and sign-key-sha3-384 filled in."""
    full: dict[str, HeaderValue] = dict(headers)
    if body:
        full["body-length"] = str(len(body))
    full["sign-key-sha3-384"] = signer.key_id
    content = encode_headers(full).encode()
    if body:
        content += b"\n\n" + body
    sig = signature if signature is not None else signer.sign(content)
    return content + b"\n\n" + _wrap(base64.b64encode(sig).decode()).encode() + b"\n"


def account_key_assertion(
    key: SigningKey,
    signer: SigningKey,
    *,
    authority: str | None = None,
    since: str = ROOT_SINCE,
    until: str | None = None,
    revision: str = "1",
) -> bytes:
    headers: dict[str, HeaderValue] = {
        "type": "account-key",
        "authority-id": authority or signer.account_id,
        "revision": revision,
        "public-key-sha3-384": key.key_id,
        "account-id": key.account_id,
        "name": key.name,
        "since": since,
    }
    if until:
        headers["until"] = until
    body = _wrap(base64.b64encode(key.blob).decode()).encode()
    return encode_assertion(headers, signer, body)


def join_stream(assertions: Sequence[bytes]) -> bytes:
    """Assertions as `snap download` writes them: each ends with a blank line."""
    return b"".join(a.rstrip(b"\n") + b"\n\n" for a in assertions)


@dataclass
class Authority:
    """A root key (trusted with --trusted-root) and a store key it signs.

    The stand-in for Canonical's root and store keys: prepare and verify check the
    stand-in snaps against it exactly as they check real snaps against Canonical's.
    """

    __test__ = False  # not a pytest test class (tests subclass it as TestAuthority)
    PUBLISHER = "k8s-airgap-lab"
    NOTE = "stand-in built by the k8s-airgap lab\nnot the k8s snap, not published anywhere"

    root: SigningKey
    store: SigningKey
    store_until: str | None = None
    _store_assert: bytes = field(default=b"", repr=False)

    @classmethod
    def create(
        cls, account_id: str = "k8s-airgap-lab", bits: int = 2048, store_until: str | None = None
    ) -> Authority:
        return cls(
            new_key("root", account_id, bits), new_key("store", account_id, bits), store_until
        )

    @property
    def root_assertion(self) -> bytes:
        return account_key_assertion(self.root, self.root)

    @property
    def store_assertion(self) -> bytes:
        if not self._store_assert:
            self._store_assert = account_key_assertion(
                self.store, self.root, until=self.store_until
            )
        return self._store_assert

    def write_root(self, path: Path) -> Path:
        path.write_bytes(self.root_assertion)
        return path

    def declaration(
        self,
        name: str,
        snap_id: str,
        *,
        extra: Mapping[str, HeaderValue] | None = None,
        body: bytes = b"",
    ) -> bytes:
        headers: dict[str, HeaderValue] = {
            "type": "snap-declaration",
            "authority-id": self.store.account_id,
            "revision": "3",
            "series": "16",
            "snap-id": snap_id,
            "publisher-id": self.PUBLISHER,
            "snap-name": name,
            "timestamp": TIMESTAMP,
        }
        headers.update(extra or {})
        return encode_assertion(headers, self.store, body)

    def revision(
        self, snap_id: str, sha3: str, size: int, revision: str = "42", timestamp: str = TIMESTAMP
    ) -> bytes:
        headers: dict[str, HeaderValue] = {
            "type": "snap-revision",
            "authority-id": self.store.account_id,
            "snap-sha3-384": sha3,
            "developer-id": self.PUBLISHER,
            "snap-id": snap_id,
            "snap-revision": revision,
            "snap-size": str(size),
            "timestamp": timestamp,
        }
        return encode_assertion(headers, self.store)

    def assert_for(
        self,
        snap: Path,
        name: str,
        *,
        snap_id: str | None = None,
        revision: str = "42",
        size: int | None = None,
        revision_snap_id: str | None = None,
        with_revision: bool = True,
        timestamp: str = TIMESTAMP,
    ) -> bytes:
        """The .assert `snap download` would write for this file (tweakable for tests).

        The declaration carries a multi-line header, a list, a map and a body, so the
        parser meets every header form snapd writes.
        """
        data = snap.read_bytes()
        sha3 = b64url_nopad(hashlib.sha3_384(data).digest())
        sid = snap_id or (name + "-snap-id-" + "x" * 32)[:32]
        extra: dict[str, HeaderValue] = {
            "publisher-note": self.NOTE,
            "aliases": [{"name": f"{name}-alias", "target": name}],
            "plugs": {"network": {"allow-installation": "true"}},
        }
        parts = [
            self.store_assertion,
            self.declaration(name, sid, extra=extra, body=b"test declaration body\n"),
        ]
        if with_revision:
            parts.append(
                self.revision(
                    revision_snap_id or sid,
                    sha3,
                    len(data) if size is None else size,
                    revision,
                    timestamp,
                )
            )
        return join_stream(parts)


def build_snap(
    workdir: Path,
    name: str,
    *,
    version: str = "1.0",
    base: str | None = None,
    snap_type: str | None = None,
    images: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
    pad: int = 0,
    modes: Mapping[str, int] | None = None,
) -> Path:
    """A real squashfs snap at workdir/<name>.snap (meta/snap.yaml, images.txt)."""
    root = workdir / f"{name}-root"
    if root.exists():
        shutil.rmtree(root)
    (root / "meta").mkdir(parents=True)
    meta = [f"name: {name}", f"version: '{version}'", f"summary: stand-in snap {name}"]
    if base:
        meta.append(f"base: {base}")
    if snap_type:
        meta.append(f"type: {snap_type}")
    (root / "meta" / "snap.yaml").write_text("\n".join(meta) + "\n")
    if images:
        (root / "images.txt").write_text("\n".join(images) + "\n")
    for rel, content in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
        mode = (modes or {}).get(rel, 0o755 if rel.startswith("bin/") else None)
        if mode is not None:
            (root / rel).chmod(mode)
    if pad:
        (root / "padding.bin").write_bytes(hashlib.shake_256(name.encode()).digest(pad))
    out = workdir / f"{name}.snap"
    out.unlink(missing_ok=True)
    process.run(
        # Fixed times: the same files give the same snap, as the store serves one file per
        # revision (a day-2 delta must not carry an unchanged base again).
        ["mksquashfs", str(root), str(out), "-noappend", "-comp", "xz", "-all-root",
         "-all-time", str(SNAP_TIME), "-mkfs-time", str(SNAP_TIME), "-no-progress", "-quiet"],
        resolution="apt-get install squashfs-tools (mksquashfs)",
    )
    shutil.rmtree(root)
    return out


def make_snap_set(
    directory: Path, authority: Authority, *, images: Sequence[str] = (), base: str = "core22"
) -> dict[str, tuple[Path, Path]]:
    """k8s (classic app on ``base``, with images.txt), the base and snapd, each with .assert."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, Path]] = {}
    specs: list[tuple[str, str | None, str | None, Sequence[str]]] = [
        ("k8s", base, None, images),
        (base, None, "base", ()),
        ("snapd", None, "snapd", ()),
    ]
    for n, (name, snap_base, kind, imgs) in enumerate(specs):
        snap = build_snap(directory, name, base=snap_base, snap_type=kind, images=imgs)
        assertion = directory / f"{name}.assert"
        assertion.write_bytes(authority.assert_for(snap, name, revision=str(100 + n)))
        out[name] = (snap, assertion)
    return out
