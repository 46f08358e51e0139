"""The OpenPGP profile snap assertions use (snapd's asserts package, RFC 4880).

- signature: base64 of 0x01 + one OpenPGP v4 signature packet (new-format header),
  RSA (algo 1) with SHA-512 (hash 10), over the assertion's content;
- account-key body: base64 of 0x01 + one OpenPGP v4 public-key packet.
Only that profile is accepted; anything else is rejected with the reason. A
signature's MPI is read as Go's OpenPGP code writes it: the key's full bit length,
leading zero bits kept.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from airgap.errors import AirgapError
from airgap.snaps.assertions import (
    Assertion,
    b64url_nopad,
)

FORMAT_V1 = 0x01


TAG_SIGNATURE = 2


TAG_PUBLIC_KEY = 6


ALGO_RSA = 1


HASH_SHA512 = 10


SUBPACKET_ISSUER = 16


MIN_RSA_BITS = 2048


class TrustError(AirgapError):
    """An assertion whose signature chain does not verify up to the trusted root."""

    default_resolution = (
        "Download the snap and its .assert again on the connected side (`invoke prepare`); "
        "for a brand store or the lab, pass that store's root account-key with "
        "--trusted-root FILE."
    )


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    created: int
    rsa_key: rsa.RSAPublicKey
    openpgp_key_id: bytes

    @property
    def bits(self) -> int:
        return self.rsa_key.key_size


@dataclass(frozen=True)
class Signature:
    sig_type: int
    hashed_trailer: bytes
    hash_prefix: bytes
    value: int
    bits: int
    issuer: bytes | None


@dataclass
class _Reader:
    data: bytes
    where: str
    pos: int = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise TrustError(f"{self.where}: truncated OpenPGP packet")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def mpi(self, what: str, *, leading_zeros: bool = False) -> tuple[int, int]:
        """An MPI's value and its declared bit count.

        RFC 4880 says the count is the value's exact bit length, and gpg writes it so.
        Go's OpenPGP code (snapd, the Snap Store) writes a signature's full key length
        instead and accepts leading zero bits when reading: about half of all real
        store signatures have a value shorter than the key. ``leading_zeros`` takes
        that form; the caller then checks the count against the key.
        """
        bits = self.u16()
        value = int.from_bytes(self.take((bits + 7) // 8), "big")
        exact = value.bit_length() == bits
        if not exact and not (leading_zeros and value.bit_length() < bits):
            raise TrustError(f"{self.where}: {what}: MPI bit count {bits} does not match its value")
        return value, bits

    def done(self, what: str) -> None:
        if self.pos != len(self.data):
            raise TrustError(
                f"{self.where}: {len(self.data) - self.pos} unexpected byte(s) after the {what}"
            )


def _packet(blob: bytes, where: str, want_tag: int, what: str) -> bytes:
    """The body of the single OpenPGP packet in ``0x01 + packet``."""
    if not blob or blob[0] != FORMAT_V1:
        got = f"0x{blob[0]:02x}" if blob else "nothing"
        raise TrustError(f"{where}: {what}: unsupported format byte {got} (expected 0x01)")
    r = _Reader(blob[1:], f"{where}: {what}")
    hdr = r.byte()
    if not hdr & 0x80:
        raise TrustError(f"{where}: {what}: not an OpenPGP packet (header byte 0x{hdr:02x})")
    if not hdr & 0x40:
        raise TrustError(
            f"{where}: {what}: old-format OpenPGP packet header; only the new format is accepted"
        )
    tag = hdr & 0x3F
    if tag != want_tag:
        raise TrustError(f"{where}: {what}: OpenPGP packet tag {tag}, expected {want_tag}")
    first = r.byte()
    if first < 192:
        length = first
    elif first < 224:
        length = ((first - 192) << 8) + r.byte() + 192
    elif first == 255:
        length = r.u32()
    else:
        raise TrustError(f"{where}: {what}: partial-length OpenPGP packet is not accepted")
    body = r.take(length)
    r.done("packet")
    return body


# snapd derives a key's id and OpenPGP key id from its RSA numbers with this creation
# time, whatever the packet says (asserts/crypto.go: v1FixedTimestamp, 2016-01-01T00:00Z);
# Canonical's keys carry it. A key made with another time gets another id there.
SNAPD_KEY_TIME = 1451606400


def _mpi_bytes(value: int) -> bytes:
    return struct.pack(">H", value.bit_length()) + value.to_bytes((value.bit_length() + 7) // 8,
                                                                   "big")


def snapd_key_body(n: int, e: int) -> bytes:
    """The public-key packet body snapd hashes: v4, SNAPD_KEY_TIME, RSA, n, e."""
    return (b"\x04" + struct.pack(">I", SNAPD_KEY_TIME) + bytes([ALGO_RSA]) + _mpi_bytes(n)
            + _mpi_bytes(e))


def packet_header(tag: int, length: int) -> bytes:
    """A new-format packet header, as Go's OpenPGP code writes it."""
    if length < 192:
        return bytes([0xC0 | tag, length])
    if length < 8384:
        length -= 192
        return bytes([0xC0 | tag, (length >> 8) + 192, length & 0xFF])
    return bytes([0xC0 | tag, 0xFF]) + struct.pack(">I", length)


def parse_public_key(blob: bytes, where: str) -> PublicKey:
    body = _packet(blob, where, TAG_PUBLIC_KEY, "public key")
    r = _Reader(body, f"{where}: public key")
    version = r.byte()
    if version != 4:
        raise TrustError(f"{where}: public key packet version {version}; only v4 is accepted")
    created = r.u32()
    algo = r.byte()
    if algo != ALGO_RSA:
        raise TrustError(f"{where}: public key algorithm {algo}; only RSA (1) is accepted")
    n, _ = r.mpi("RSA modulus")
    e, _ = r.mpi("RSA exponent")
    r.done("public key")
    if n.bit_length() < MIN_RSA_BITS:
        raise TrustError(
            f"{where}: RSA key of {n.bit_length()} bits is too small (minimum {MIN_RSA_BITS})"
        )
    try:
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise TrustError(f"{where}: invalid RSA public key ({exc})") from None
    # As snapd: the id and the OpenPGP key id of the key rebuilt at SNAPD_KEY_TIME.
    normal = snapd_key_body(n, e)
    fingerprint = hashlib.sha1(b"\x99" + struct.pack(">H", len(normal)) + normal).digest()
    packet = packet_header(TAG_PUBLIC_KEY, len(normal)) + normal
    return PublicKey(
        key_id=b64url_nopad(hashlib.sha3_384(b"\x01" + packet).digest()),
        created=created,
        rsa_key=key,
        openpgp_key_id=fingerprint[-8:],
    )


def parse_signature(blob: bytes, where: str) -> Signature:
    body = _packet(blob, where, TAG_SIGNATURE, "signature")
    r = _Reader(body, f"{where}: signature")
    version = r.byte()
    if version != 4:
        raise TrustError(f"{where}: signature packet version {version}; only v4 is accepted")
    sig_type = r.byte()
    if sig_type != 0x00:
        raise TrustError(
            f"{where}: signature type 0x{sig_type:02x}; only binary-document (0x00) is accepted"
        )
    algo = r.byte()
    if algo != ALGO_RSA:
        raise TrustError(f"{where}: signature algorithm {algo}; only RSA (1) is accepted")
    hash_algo = r.byte()
    if hash_algo != HASH_SHA512:
        raise TrustError(
            f"{where}: signature hash algorithm {hash_algo}; only SHA-512 (10) is accepted"
        )
    hashed_len = r.u16()
    hashed = r.take(hashed_len)
    _subpackets(hashed, f"{where}: hashed subpackets")
    trailer = body[: r.pos]
    unhashed = _subpackets(r.take(r.u16()), f"{where}: unhashed subpackets")
    issuer = None
    for sp_type, sp_data in unhashed:
        if sp_type != SUBPACKET_ISSUER or len(sp_data) != 8 or issuer is not None:
            raise TrustError(
                f"{where}: unhashed subpackets may hold only one issuer key id "
                f"(found type {sp_type})"
            )
        issuer = sp_data
    prefix = r.take(2)
    value, bits = r.mpi("RSA signature", leading_zeros=True)
    r.done("signature")
    return Signature(
        sig_type=sig_type,
        hashed_trailer=trailer,
        hash_prefix=prefix,
        value=value,
        bits=bits,
        issuer=issuer,
    )


def _subpackets(data: bytes, where: str) -> list[tuple[int, bytes]]:
    r = _Reader(data, where)
    out = []
    while r.pos < len(data):
        first = r.byte()
        if first < 192:
            length = first
        elif first < 255:
            length = ((first - 192) << 8) + r.byte() + 192
        else:
            length = r.u32()
        if length < 1:
            raise TrustError(f"{where}: empty subpacket")
        chunk = r.take(length)
        out.append((chunk[0], chunk[1:]))
    return out


def check_signature(
    assertion: Assertion, key: PublicKey, issuers: Iterable[bytes] = ()
) -> Signature:
    """RFC 4880 5.2.4 over the content: hash prefix first, then the RSA signature.

    The issuer key id travels unhashed, so nothing authenticates it; it must still be
    one the signing key is known by (its v4 key id, or for a root the id its own
    self-signature carries: gpg-made signatures use the key's original creation time),
    so that no byte of a signature can change without the check failing.
    """
    where = assertion.where
    sig = parse_signature(assertion.signature, where)
    known = {key.openpgp_key_id, *issuers}
    if sig.issuer is not None and sig.issuer not in known:
        raise TrustError(
            f"{where}: signature issuer key id {sig.issuer.hex()} is not one the signing "
            f"key {key.key_id} is known by ({', '.join(sorted(k.hex() for k in known))})"
        )
    h = hashlib.sha512()
    h.update(assertion.content)
    h.update(sig.hashed_trailer)
    h.update(b"\x04\xff" + struct.pack(">I", len(sig.hashed_trailer)))
    digest = h.digest()
    if digest[:2] != sig.hash_prefix:
        raise TrustError(
            f"{where}: signature does not match the content (hash prefix "
            f"{sig.hash_prefix.hex()} != {digest[:2].hex()}): the assertion was altered"
        )
    size = (key.bits + 7) // 8
    if (sig.bits + 7) // 8 > size:
        raise TrustError(
            f"{where}: signature MPI of {sig.bits} bits is longer than the {key.bits}-bit key"
        )
    try:
        key.rsa_key.verify(
            sig.value.to_bytes(size, "big"),
            digest,
            padding.PKCS1v15(),
            utils.Prehashed(hashes.SHA512()),
        )
    except InvalidSignature:
        raise TrustError(f"{where}: RSA signature does not verify with key {key.key_id}") from None
    return sig
