"""The assertion stream parser on real Canonical assertions and on every header form."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.snaps.assertions import AssertionError_, encode_headers, parse_stream, read_stream
from tests.support.snapbuild import encode_assertion, join_stream, shared_authority

DATA = Path(__file__).resolve().parent.parent / "data" / "assertions"


def test_real_canonical_assertions_parse() -> None:
    root = read_stream(DATA / "canonical-root.account-key.assert")
    assert [a.type for a in root] == ["account-key"]
    assert root[0].header("name") == "root"
    assert len(root[0].body) == 1406
    assert root[0].content.endswith(root[0].body)
    rev = read_stream(DATA / "hello-world_29.snap-revision.assert")[0]
    assert rev.header("snap-id") == "buPKUD3TKqCOgLEjjHx5kSiCpIs5cMuQ"
    assert rev.header("snap-size") == "20480"
    assert rev.body == b""
    assert rev.content.endswith(
        b"sign-key-sha3-384: BWDEoaqyr25nF5SNCvEv2v7QnM9QsfCc0PBMYD_i2NGSQ32EF2d4D0hqUel3m8ul"
    )
    assert rev.signature[:2] == b"\x01\xc2"


def test_stream_of_three_with_multiline_list_map_and_body(tmp_path: Path) -> None:
    auth = shared_authority()
    snap = tmp_path / "x.snap"
    snap.write_bytes(b"hello")
    stream = parse_stream(auth.assert_for(snap, "hello"), "x.assert")
    assert [a.type for a in stream] == ["account-key", "snap-declaration", "snap-revision"]
    decl = stream[1]
    assert decl.headers["publisher-note"] == "built by the k8s-airgap tests\nnot published anywhere"
    assert decl.headers["aliases"] == [{"name": "hello-alias", "target": "hello"}]
    assert decl.headers["plugs"] == {"network": {"allow-installation": "true"}}
    assert decl.body == b"test declaration body\n"
    assert stream[2].header("snap-size") == "5"
    assert [a.index for a in stream] == [1, 2, 3]


def test_header_encoding_round_trips() -> None:
    headers = {
        "type": "x",
        "text": "a\nb\n\nc",
        "list": ["one", {"k": "v"}, ["n1", "n2"]],
        "map": {"a": "1", "b": {"c": "2"}, "d": ["e"]},
    }
    text = encode_headers(headers).encode()
    auth = shared_authority()
    stream = parse_stream(encode_assertion({**headers, "authority-id": "a"}, auth.store), "t")
    for k, v in headers.items():
        assert stream[0].headers[k] == v, k
    assert b"text:\n    a\n    b\n    \n    c" in text


def test_signature_at_end_of_file_without_newline() -> None:
    raw = (DATA / "hello-world_29.snap-revision.assert").read_bytes().rstrip(b"\n")
    assert (
        parse_stream(raw)[0].signature
        == read_stream(DATA / "hello-world_29.snap-revision.assert")[0].signature
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not an assertion", "no blank line after the headers"),
        (b"\x89PNG\r\n\x1a\n\x00\x00garbage\n\nAAAA", "headers are not UTF-8"),
        (b"type: a\ntype: b\n\nAAAA\n", "repeated header 'type'"),
        (b"name: x\n\nAAAA\n", "no 'type' header"),
        (b"type: a\nbody-length: 10\n\nshort", "shorter than body-length 10"),
        (b"type: a\nbody-length: 2\n\nabcd\n\nAAAA", "not followed by a blank line"),
        (b"type: a\nbody-length: 02\n\nab\n\nAAAA", "must be a non-negative integer"),
        (b"type: a\n\n", "no signature"),
        (b"type: a\n\n!!!!\n", "signature is not base64"),
        (b"type: a\n\nAB==\n", "not canonical base64"),
        (b"type: a\nmulti:\nnext: x\n\nAAAA\n", "introduces a multi-line value"),
        (b"Type: a\n\nAAAA\n", "invalid header name"),
        (b"type:a\n\nAAAA\n", "expected ': value'"),
        (b"", "no assertions"),
    ],
)
def test_garbage_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(AssertionError_, match=message) as exc:
        parse_stream(data, "bad.assert")
    assert "bad.assert" in str(exc.value)


def test_second_assertion_is_named(tmp_path: Path) -> None:
    auth = shared_authority()
    good = encode_assertion({"type": "a", "authority-id": "x"}, auth.store)
    with pytest.raises(
        AssertionError_,
        match=r"bad.assert: assertion 1 \(a\): followed by data that is not an assertion",
    ):
        parse_stream(join_stream([good, b"oops"]), "bad.assert")


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(AssertionError_, match="assertion file not found"):
        read_stream(tmp_path / "k8s.assert")


@pytest.mark.parametrize(
    "name", ["JUJH91Ve_142.snap-revision.assert", "canonical-root.account-key.assert"]
)
def test_crlf_line_endings_are_named_with_the_fix(tmp_path: Path, name: str) -> None:
    # a real assertion carried through a Windows machine or a mail client
    path = tmp_path / name
    path.write_bytes((DATA / name).read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(AssertionError_) as err:
        read_stream(path)
    assert "CRLF line endings" in err.value.brief
    assert "no blank line" not in str(err.value)
    assert f"dos2unix {path}" in (err.value.resolution or "")
