"""The hand-encoded CRI messages match protobuf's wire format byte for byte."""

from __future__ import annotations

import pytest

from airgap import cri


def test_varint_round_trip() -> None:
    for value in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        encoded = cri.encode_varint(value)
        assert cri.decode_varint(encoded, 0) == (value, len(encoded))
    assert cri.encode_varint(300) == b"\xac\x02"


def test_pull_image_request_bytes() -> None:
    # PullImageRequest{image: ImageSpec{image: "a/b:1"}}: 0a 07 | 0a 05 "a/b:1"
    assert cri.pull_image_request("a/b:1") == b"\x0a\x07\x0a\x05a/b:1"


def test_pull_image_request_with_auth() -> None:
    msg = cri.pull_image_request("x", username="u", password="pw")
    fields = list(cri.iter_fields(msg))
    assert fields[0] == (1, 2, b"\x0a\x01x")
    number, _, auth = fields[1]
    assert number == 2
    assert isinstance(auth, bytes)
    assert list(cri.iter_fields(auth)) == [(1, 2, b"u"), (2, 2, b"pw")]


def test_list_images_request_filter() -> None:
    assert cri.list_images_request() == b""
    # filter=1{ image=1{ image=1 "x" } }
    assert cri.list_images_request("x") == b"\x0a\x05\x0a\x03\x0a\x01x"


def test_long_image_name_uses_multibyte_length() -> None:
    name = "r.example:5000/" + "a" * 200 + ":1"
    msg = cri.image_status_request(name)
    (number, wire, spec), = cri.iter_fields(msg)
    assert (number, wire) == (1, 2)
    assert isinstance(spec, bytes)
    assert list(cri.iter_fields(spec)) == [(1, 2, name.encode())]


def _image(id_: str, tags: list[str], digests: list[str], size: int) -> bytes:
    msg = cri.field_string(1, id_)
    for t in tags:
        msg += cri.field_string(2, t)
    for d in digests:
        msg += cri.field_string(3, d)
    msg += cri.field_varint(4, size)
    msg += cri.field_bytes(5, cri.field_varint(1, 0))  # uid Int64Value (ignored)
    msg += cri.field_bytes(7, cri.image_spec("ignored"))  # spec (ignored)
    msg += cri.field_varint(8, 1)
    return msg


def test_decode_image_status_and_list() -> None:
    img = _image("sha256:cfg", ["r/a:1", "r/a:2"], ["r/a@sha256:man"], 1_234_567)
    status = cri.decode_image_status_response(cri.field_bytes(1, img) + cri.field_bytes(
        2, cri.field_string(1, "k") + cri.field_string(2, "v")))
    assert status == cri.Image("sha256:cfg", ["r/a:1", "r/a:2"], ["r/a@sha256:man"],
                               1_234_567, "", True)
    assert status.digests == ["sha256:man"]
    other = _image("sha256:o", [], ["q/b@sha256:x"], 5)
    listed = cri.decode_list_images_response(cri.field_bytes(1, img) + cri.field_bytes(1, other))
    assert [i.id for i in listed] == ["sha256:cfg", "sha256:o"]
    assert listed[1].repo_tags == []


def test_absent_image_is_none() -> None:
    assert cri.decode_image_status_response(b"") is None


def test_decode_pull_and_version() -> None:
    assert cri.decode_pull_image_response(cri.field_string(1, "sha256:abc")) == "sha256:abc"
    raw = b"".join(cri.field_string(i, s) for i, s in
                   enumerate(["0.1.0", "containerd", "1.6.20", "v1"], start=1))
    assert cri.decode_version_response(raw) == cri.RuntimeVersion(
        "0.1.0", "containerd", "1.6.20", "v1")


def test_unknown_wire_types_are_skipped_or_rejected() -> None:
    fixed = b"\x0d" + b"\x01\x00\x00\x00" + b"\x11" + b"\x02" + b"\x00" * 7  # i32 f1, i64 f2
    assert list(cri.iter_fields(fixed)) == [(1, 5, 1), (2, 1, 2)]
    with pytest.raises(ValueError):
        list(cri.iter_fields(b"\x0a\x05ab"))  # truncated string
    with pytest.raises(ValueError):
        list(cri.iter_fields(b"\x0b"))  # group start: unsupported


class _FakeRpcError(Exception):
    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> object:
        return type("Code", (), {"name": self._code})()

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(("code", "message", "hint"), [
    ("UNKNOWN", 'failed to resolve reference "r/a:1": r/a:1: not found', "mirror holds"),
    ("UNKNOWN", "x509: certificate signed by unknown authority", "CA"),
    ("UNAVAILABLE", "failed to connect to all addresses", "Start containerd"),
    ("UNKNOWN", "dial tcp: lookup registry.test: no such host", "[host] entry"),
    ("UNKNOWN", "proxyconnect tcp: dial tcp 10.0.0.1:3128: connection refused", "proxy"),
])
def test_errors_name_image_socket_and_hint(code: str, message: str, hint: str) -> None:
    err = cri.cri_error("pull of", "r/a:1", "/run/c.sock", _FakeRpcError(code, message))
    assert "r/a:1" in err.brief and "/run/c.sock" in err.brief and message in err.brief
    assert code in (err.details or "")
    assert hint in (err.resolution or "")
