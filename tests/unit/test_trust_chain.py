"""The signature chain root -> store -> snap-revision, on Canonical's real assertions
and on a chain the tests sign themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.snaps.assertions import AssertionError_, HeaderValue, parse_stream, read_stream
from airgap.snaps.trust import Chain, TrustError, TrustStore, account_key, verify_chains
from tests.support.snapbuild import (
    TIMESTAMP,
    TestAuthority,
    TestKey,
    account_key_assertion,
    encode_assertion,
    join_stream,
    new_key,
    shared_authority,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "assertions"
ROOT = (DATA / "canonical-root.account-key.assert").read_bytes()
STORE = (DATA / "canonical-store.account-key.assert").read_bytes()
REVISION = (DATA / "hello-world_29.snap-revision.assert").read_bytes()
FAILURES = (TrustError, AssertionError_)


def chain(root: bytes, store: bytes, revision: bytes) -> list[str]:
    trust = TrustStore.from_assertions(parse_stream(root, "root.assert"))
    stream = parse_stream(store, "store.assert") + parse_stream(revision, "revision.assert")
    return [c.describe() for c in verify_chains(stream, trust)]


def test_packaged_root_is_canonical_root_byte_exact() -> None:
    from importlib import resources

    packaged = resources.files("airgap").joinpath("data", "canonical-root.account-key.assert")
    assert packaged.read_bytes() == ROOT
    trust = TrustStore.default()
    assert list(trust.roots) == ["-CvQKAwRQ5h3Ffn10FILJoEZUXOv6km9FwA80-Rcj-f-6jadQ89VRswHNiEB9Lxk"]


def test_real_chain_verifies() -> None:
    assert chain(ROOT, STORE, REVISION) == ["root -> account-key", "root -> store -> snap-revision"]
    store_key = account_key(parse_stream(STORE)[0])
    assert store_key.key_id == "BWDEoaqyr25nF5SNCvEv2v7QnM9QsfCc0PBMYD_i2NGSQ32EF2d4D0hqUel3m8ul"
    assert store_key.key.bits == 4096


def test_revision_without_store_key_names_the_missing_key() -> None:
    trust = TrustStore.default()
    with pytest.raises(
        TrustError, match=r"revision.assert: assertion 1 \(snap-revision .*signed by key BWDE"
    ):
        verify_chains(parse_stream(REVISION, "revision.assert"), trust)


def _flip(data: bytes, i: int) -> bytes:
    m = bytearray(data)
    m[i] ^= 0x01
    return bytes(m)


def _regions(data: bytes) -> dict[str, range]:
    head_end = data.index(b"\n\n")
    sig_start = data.rindex(b"\n\n", 0, len(data.rstrip(b"\n"))) + 2
    return {
        "header": range(0, head_end),
        "body": range(head_end + 2, sig_start - 2),
        "signature": range(sig_start, len(data.rstrip(b"\n"))),
    }


@pytest.mark.parametrize(
    ("which", "region"),
    [
        (w, r)
        for w in ("root", "store", "revision")
        for r in ("header", "body", "signature")
        if (w, r) != ("revision", "body")
    ],  # a snap-revision has no body
)
def test_flipping_a_sample_of_bytes_fails_and_names_the_assertion(which: str, region: str) -> None:
    blobs = {"root": ROOT, "store": STORE, "revision": REVISION}
    positions = _regions(blobs[which])[region]
    assert positions
    sample = sorted({positions[0], positions[-1], *positions[:: max(1, len(positions) // 25)]})
    for i in sample:
        tampered = dict(blobs, **{which: _flip(blobs[which], i)})
        with pytest.raises(FAILURES) as exc:
            chain(tampered["root"], tampered["store"], tampered["revision"])
        text = str(exc.value)
        assert f"{which}.assert: assertion 1" in text, (i, text)
        reason = text.split("): ", 1)[-1]
        assert len(reason) > 10, text


def test_full_sweep_every_single_byte_flip_fails() -> None:
    blobs = {"root": ROOT, "store": STORE, "revision": REVISION}
    passed = []
    for which, data in blobs.items():
        for i in range(len(data)):
            tampered = dict(blobs, **{which: _flip(data, i)})
            try:
                chain(tampered["root"], tampered["store"], tampered["revision"])
            except FAILURES:
                continue
            passed.append((which, i))
    assert passed == []


def test_real_store_key_with_until_before_revision_fails() -> None:
    altered = STORE.replace(
        b"since: 2016-04-01T00:00:00.0Z\n",
        b"since: 2016-04-01T00:00:00.0Z\nuntil: 2017-01-01T00:00:00.0Z\n",
    )
    assert altered != STORE
    with pytest.raises(TrustError, match=r"store.assert: assertion 1"):
        chain(ROOT, altered, REVISION)


def test_store_key_expired_before_revision_timestamp(tmp_path: Path) -> None:
    auth = TestAuthority.create(store_until="2023-01-01T00:00:00Z")
    snap = tmp_path / "x.snap"
    snap.write_bytes(b"data")
    trust = TrustStore.from_assertions(parse_stream(auth.root_assertion, "root"))
    with pytest.raises(
        TrustError,
        match=r"x.assert: assertion 2 \(snap-declaration.*signing key "
        r"test-authority/store .* not valid at the assertion's time "
        r"2024-05-01T12:00:00.123456\+00:00",
    ):
        verify_chains(parse_stream(auth.assert_for(snap, "x"), "x.assert"), trust)


def test_test_chain_verifies_only_with_its_root(tmp_path: Path) -> None:
    auth = shared_authority()
    snap = tmp_path / "x.snap"
    snap.write_bytes(b"data")
    stream = parse_stream(auth.assert_for(snap, "x"), "x.assert")
    root = auth.write_root(tmp_path / "root.assert")
    chains = verify_chains(stream, TrustStore.from_file(root))
    assert [c.describe() for c in chains] == [
        "root -> account-key",
        "store -> snap-declaration",
        "store -> snap-revision",
    ] or [c.describe() for c in chains][-1] == "root -> store -> snap-revision"
    with pytest.raises(TrustError, match="neither a trusted root"):
        verify_chains(stream, TrustStore.default())
    other = TestAuthority.create()
    with pytest.raises(TrustError, match="neither a trusted root"):
        verify_chains(stream, TrustStore.from_assertions(parse_stream(other.root_assertion)))


def test_authority_must_own_the_signing_key() -> None:
    auth = shared_authority()
    trust = TrustStore.from_assertions(parse_stream(auth.root_assertion))
    forged = encode_assertion(
        {
            "type": "snap-revision",
            "authority-id": "someone-else",
            "timestamp": "2024-01-01T00:00:00Z",
        },
        auth.root,
    )
    with pytest.raises(
        TrustError, match="authority-id 'someone-else' but signed by a key of account"
    ):
        verify_chains(parse_stream(forged), trust)


def test_key_signed_by_itself_is_not_trusted() -> None:
    rogue = TestAuthority.create()
    trust = TrustStore.from_assertions(parse_stream(shared_authority().root_assertion))
    stream = parse_stream(join_stream([account_key_assertion(rogue.root, rogue.root)]), "rogue")
    with pytest.raises(TrustError, match="rogue: assertion 1"):
        verify_chains(stream, trust)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (1, 0x88, "old-format OpenPGP packet header"),  # tag byte: old format, tag 2
        (4, 3, "signature packet version 3"),
        (6, 17, "signature algorithm 17"),
        (7, 8, "hash algorithm 8"),
        (5, 1, "signature type 0x01"),
        (0, 0x02, "unsupported format byte 0x02"),
    ],
)
def test_unsupported_packet_forms_are_rejected_with_reason(
    offset: int, value: int, message: str
) -> None:
    auth = shared_authority()
    content = (
        b"type: test\nauthority-id: test-authority\ntimestamp: 2024-01-01T00:00:00Z\n"
        b"sign-key-sha3-384: " + auth.root.key_id.encode()
    )
    sig = bytearray(auth.root.sign(content))
    assert 192 <= sig[2] < 224  # two-octet length: the v4 body starts at index 4
    sig[offset] = value
    import base64

    raw = content + b"\n\n" + base64.b64encode(bytes(sig)) + b"\n"
    trust = TrustStore.from_assertions(parse_stream(auth.root_assertion))
    with pytest.raises(TrustError, match=message):
        verify_chains(parse_stream(raw, "p"), trust)


def test_trusted_root_file_that_is_not_an_account_key(tmp_path: Path) -> None:
    path = tmp_path / "root.assert"
    path.write_bytes(REVISION)
    with pytest.raises(TrustError, match="a trusted root must be an account-key"):
        TrustStore.from_file(path)
    path.write_bytes(b"junk")
    with pytest.raises(TrustError, match=r"trusted root: .*no blank line"):
        TrustStore.from_file(path)


def test_real_stream_is_read_from_files() -> None:
    trust = TrustStore.default()
    stream = read_stream(DATA / "canonical-store.account-key.assert") + read_stream(
        DATA / "hello-world_29.snap-revision.assert"
    )
    assert verify_chains(stream, trust)[-1].describe() == "root -> store -> snap-revision"


DEVELOPER = "some-developer"


def _developer_chain(auth: TestAuthority) -> tuple[TestKey, bytes]:
    """root -> store -> a developer's account-key, every signature valid (as the store
    certifies developer keys for snap-build and validation assertions)."""
    dev = new_key("dev-key", DEVELOPER)
    return dev, account_key_assertion(dev, auth.store)


def _developer_signed(auth: TestAuthority, headers: dict[str, HeaderValue]) -> list[Chain]:
    trust = TrustStore.from_assertions(parse_stream(auth.root_assertion, "root"))
    dev, dev_key = _developer_chain(auth)
    forged = encode_assertion({**headers, "authority-id": DEVELOPER}, dev)
    stream = parse_stream(join_stream([auth.store_assertion, dev_key, forged]), "forged.assert")
    return verify_chains(stream, trust)


def test_developer_key_chain_itself_verifies() -> None:
    """The developer account-key is signed by the root's account, so it is accepted; only
    what it signs is limited."""
    auth = shared_authority()
    trust = TrustStore.from_assertions(parse_stream(auth.root_assertion, "root"))
    _, dev_key = _developer_chain(auth)
    stream = parse_stream(join_stream([auth.store_assertion, dev_key]), "dev.assert")
    assert [c.describe() for c in verify_chains(stream, trust)] == [
        "root -> account-key",
        "root -> store -> account-key",
    ]


def test_snap_revision_signed_by_developer_key_is_refused() -> None:
    auth = shared_authority()
    headers: dict[str, HeaderValue] = {
        "type": "snap-revision",
        "snap-sha3-384": "x" * 64,
        "developer-id": DEVELOPER,
        "snap-id": "k8s-snap-id-" + "x" * 20,
        "snap-revision": "9999",
        "snap-size": "4",
        "timestamp": TIMESTAMP,
    }
    with pytest.raises(
        TrustError,
        match=r"forged.assert: assertion 3 \(snap-revision.*\): snap-revision is not signed by "
        r"a directly trusted authority: authority-id 'some-developer'.*'test-authority'",
    ):
        _developer_signed(auth, headers)


def test_snap_declaration_signed_by_developer_key_is_refused() -> None:
    auth = shared_authority()
    headers: dict[str, HeaderValue] = {
        "type": "snap-declaration",
        "revision": "1",
        "series": "16",
        "snap-id": "k8s-snap-id-" + "x" * 20,
        "publisher-id": DEVELOPER,
        "snap-name": "k8s",
        "timestamp": TIMESTAMP,
    }
    with pytest.raises(
        TrustError,
        match=r"forged.assert: assertion 3 \(snap-declaration.*\): snap-declaration is not "
        r"signed by a directly trusted authority: authority-id 'some-developer'",
    ):
        _developer_signed(auth, headers)


def test_account_key_certified_by_developer_key_is_refused() -> None:
    """A developer key cannot certify further keys: the account-key it signs is refused,
    and so is anything that key signs, whatever its authority-id claims."""
    auth = shared_authority()
    trust = TrustStore.from_assertions(parse_stream(auth.root_assertion, "root"))
    dev, dev_key = _developer_chain(auth)
    sub = new_key("sub", DEVELOPER)
    sub_key = account_key_assertion(sub, dev)
    stream = parse_stream(join_stream([auth.store_assertion, dev_key, sub_key]), "sub.assert")
    with pytest.raises(
        TrustError,
        match=r"sub.assert: assertion 3 \(account-key.*\): account-key is not signed by a "
        r"directly trusted authority: authority-id 'some-developer'",
    ):
        verify_chains(stream, trust)


def test_other_assertion_types_may_come_from_a_certified_developer() -> None:
    """snapd lets non-store types (snap-build, validation...) come from any certified
    account; only the types in DIRECTLY_TRUSTED are limited to the root's account."""
    auth = shared_authority()
    chains = _developer_signed(auth, {"type": "snap-build", "timestamp": TIMESTAMP})
    assert chains[-1].describe() == "root -> store -> dev-key -> snap-build"


def test_trusted_accounts_are_the_roots_accounts() -> None:
    assert TrustStore.default().trusted_accounts == {"canonical"}
    lab = TrustStore.from_assertions(parse_stream(shared_authority().root_assertion))
    assert lab.trusted_accounts == {"test-authority"}


def test_lab_standin_set_verifies_with_its_own_root(tmp_path: Path) -> None:
    from lab.standin import Authority

    auth = Authority.create()
    trust = TrustStore.from_assertions(parse_stream(auth.root_assertion, "lab-root"))
    snap = tmp_path / "k8s.snap"
    snap.write_bytes(b"stand-in")
    chains = verify_chains(parse_stream(auth.assert_for(snap, "k8s"), "k8s.assert"), trust)
    assert [c.describe() for c in chains][1:] == [
        "root -> store -> snap-declaration",
        "root -> store -> snap-revision",
    ]
