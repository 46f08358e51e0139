"""Signatures whose RSA value is shorter than the key, as Go's OpenPGP code writes them.

snapd and the Snap Store sign with Go's OpenPGP code: it declares the key's full bit
length and keeps the leading zero bytes. About half of all real signatures have a
value shorter than 4096 bits. The real ones come from ../shared/data (byte-exact,
public); the generated ones from a fixed test key, so that the cases with one and two
leading zero bytes are always present (RSA PKCS#1 v1.5 signing is deterministic).
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from airgap.snaps.assertions import Assertion, AssertionError_, parse_stream
from airgap.snaps.trust import (
    TrustError,
    TrustStore,
    check_signature,
    parse_public_key,
    parse_signature,
    verify_chains,
)
from lab.standin import SigningKey, _new_packet

DATA = Path(__file__).resolve().parent.parent / "data"


def _real(name: str) -> list[str]:
    stream = parse_stream((DATA / "assertions" / name).read_bytes(), name)
    return [c.describe() for c in verify_chains(stream, TrustStore.default())]


def _declared_and_actual_bits(assertion_file: str) -> tuple[int, int]:
    stream = parse_stream((DATA / "assertions" / assertion_file).read_bytes(), assertion_file)
    sig = parse_signature(stream[-1].signature, assertion_file)
    return sig.bits, sig.value.bit_length()


@pytest.mark.parametrize(
    "name", ["JUJH91Ve_142.snap-revision.assert", "TIM9dBBJ_93.snap-revision.assert"]
)
def test_real_store_signed_revisions_verify_to_canonicals_root(name: str) -> None:
    assert _real(name) == ["root -> account-key", "root -> store -> snap-revision"]


def test_the_real_short_signature_is_short_and_declared_at_full_length() -> None:
    # what makes JUJH91Ve_142 the case: 4096 declared, the value itself shorter
    declared, actual = _declared_and_actual_bits("JUJH91Ve_142.snap-revision.assert")
    assert declared == 4096
    assert actual < 4096
    declared, actual = _declared_and_actual_bits("TIM9dBBJ_93.snap-revision.assert")
    assert (declared, actual) == (4096, 4096)


def _vector_key() -> tuple[SigningKey, dict[str, object]]:
    spec = json.loads((DATA / "trust" / "leading-zeros-key.json").read_text())
    p, q, e = int(spec["p"], 16), int(spec["q"], 16), int(spec["e"])
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    return SigningKey("root", "leading-zeros", numbers.private_key()), spec


def _zero_bytes_of(blob: bytes) -> tuple[int, int]:
    """(declared bits, leading zero bytes of the value as written) of a signature blob."""
    sig = parse_signature(blob, "generated")
    size = (sig.bits + 7) // 8
    raw = sig.value.to_bytes(size, "big")
    return sig.bits, size - len(raw.lstrip(b"\0"))


def _check(key: SigningKey, content: bytes, signature: bytes) -> None:
    signed = Assertion(headers={}, body=b"", content=content, signature=signature)
    check_signature(signed, parse_public_key(key.blob, "test key"))


@pytest.mark.parametrize("zeros", [1, 2])
def test_generated_signatures_with_leading_zero_bytes_verify(zeros: int) -> None:
    key, spec = _vector_key()
    n = spec["leading_zero_bytes"][str(zeros)]  # type: ignore[index]
    content = str(spec["content"]).format(n=n).encode()
    signature = key.sign(content, created=int(spec["created"]))  # type: ignore[call-overload]
    assert _zero_bytes_of(signature) == (2048, zeros)
    _check(key, content, signature)


def test_property_many_go_style_signatures_all_verify() -> None:
    key, _ = _vector_key()
    rng = random.Random(18)
    short = 0
    for i in range(300):
        content = f"property {i} {rng.getrandbits(64):x}\n".encode()
        signature = key.sign(content, created=1700000000 + i)
        assert _zero_bytes_of(signature)[0] == 2048, "the lab writes the full key length"
        _check(key, content, signature)
        short += parse_signature(signature, "generated").value.bit_length() < 2048
    # about half of all signatures are shorter than the key; every one verified above
    assert 100 < short < 200, short


def _with_value(signature: bytes, value: bytes, declared_bits: int) -> bytes:
    """The same signature packet with its MPI replaced."""
    body = signature[1:]
    body = body[3:] if body[1] >= 192 else body[2:]
    mpi_at = len(body) - 2 - ((struct.unpack(">H", body[-258:-256])[0] + 7) // 8)
    assert mpi_at == len(body) - 258
    return b"\x01" + _new_packet(2, body[:mpi_at] + struct.pack(">H", declared_bits) + value)


@pytest.mark.parametrize("zeros", [1, 2, 3, 8, 100, 255])
def test_parser_keeps_any_number_of_leading_zero_bytes(zeros: int) -> None:
    # three or more zero bytes are out of reach of a search over real signatures
    # (1 in 2**24); the parser's reading of such an MPI is checked on its own here
    key, _ = _vector_key()
    template = key.sign(b"template\n", created=1700000000)
    rng = random.Random(zeros)
    tail = bytes([rng.randrange(1, 256)]) + rng.randbytes(255 - zeros)
    sig = parse_signature(_with_value(template, b"\0" * zeros + tail, 2048), "synthetic")
    assert sig.bits == 2048
    assert sig.value == int.from_bytes(tail, "big")


def test_a_count_below_the_values_length_is_refused() -> None:
    key, _ = _vector_key()
    template = key.sign(b"template\n", created=1700000000)
    blob = _with_value(template, b"\x80" + bytes(255), 2047)
    with pytest.raises(TrustError, match="MPI bit count 2047 does not match its value"):
        parse_signature(blob, "synthetic")


def test_a_signature_longer_than_the_key_is_refused() -> None:
    key, _ = _vector_key()
    content = b"too long\n"
    good = key.sign(content, created=1700000000)
    _check(key, content, good)
    raw = good[-256:]
    padded = _with_value(good, b"\0" * 8 + raw, 2048 + 64)
    with pytest.raises(TrustError, match="2112 bits is longer than the 2048-bit key"):
        _check(key, content, padded)


@pytest.mark.parametrize(
    "name", ["JUJH91Ve_142.snap-revision.assert", "TIM9dBBJ_93.snap-revision.assert"]
)
def test_every_single_byte_flip_of_a_real_revision_fails(name: str) -> None:
    # accepting leading zeros must not make any byte of the signature malleable
    data = (DATA / "assertions" / name).read_bytes()
    start = data.index(b"type: snap-revision")
    passed = []
    for i in range(start, len(data.rstrip(b"\n"))):
        m = bytearray(data)
        m[i] ^= 0x01
        try:
            stream = parse_stream(bytes(m), name)
            verify_chains(stream, TrustStore.default())
        except (TrustError, AssertionError_):
            continue
        passed.append(i)
    assert passed == []


def test_a_key_made_at_another_time_gets_snapds_id_not_its_own() -> None:
    # snapd (asserts/crypto.go) hashes the key rebuilt at 2016-01-01, whatever time the
    # packet carries; so does parse_public_key. A header id over the raw packet of a key
    # made in 2020 is what snapd refuses ("public key does not match provided key id").
    import hashlib

    from airgap.snaps.assertions import b64url_nopad
    from airgap.snaps.openpgp import SNAPD_KEY_TIME, parse_public_key
    from lab.standin import new_key

    key = new_key("k", "acct")
    assert key.created == SNAPD_KEY_TIME
    assert parse_public_key(key.blob, "k").key_id == key.key_id
    key.created = 1577836800  # 2020-01-01
    raw_id = b64url_nopad(hashlib.sha3_384(key.blob).digest())
    assert parse_public_key(key.blob, "k").key_id != raw_id


@pytest.mark.parametrize("name", ["canonical-root", "canonical-store"])
def test_canonicals_real_keys_carry_snapds_fixed_time_and_their_header_id(name: str) -> None:
    # Real data, not made by our code: Canonical's account-keys are made at the time snapd
    # rebuilds every key with, so for them the raw packet and snapd's rebuild agree.
    import base64
    import hashlib

    from airgap.snaps.assertions import b64url_nopad, parse_stream
    from airgap.snaps.openpgp import SNAPD_KEY_TIME, parse_public_key

    path = Path(__file__).resolve().parents[1] / "data" / "assertions" / \
        f"{name}.account-key.assert"
    (key,) = [a for a in parse_stream(path.read_bytes(), source=path.name)
              if a.type == "account-key"]
    body = key.body if isinstance(key.body, bytes) else key.body.encode()
    blob = base64.b64decode(b"".join(body.split()))
    parsed = parse_public_key(blob, name)
    assert parsed.created == SNAPD_KEY_TIME
    assert parsed.key_id == key.header("public-key-sha3-384")
    assert parsed.key_id == b64url_nopad(hashlib.sha3_384(blob).digest())
