"""A small CRI client: pull and inspect images the way kubelet does.

`ctr images pull` pulls inside the ctr process with ctr's own environment and flags;
kubelet pulls through CRI, inside containerd, with containerd's environment (proxy
drop-in) and `config_path` (hosts.toml). Only a CRI pull proves what a node will
really do. crictl is not in Debian, so this speaks CRI directly with grpcio and a few
hand-encoded protobuf messages (runtime.v1; no generated code, no protoc).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.errors import AirgapError

IMAGE_SERVICE = "/runtime.v1.ImageService/"
RUNTIME_SERVICE = "/runtime.v1.RuntimeService/"
PULL_TIMEOUT = 300.0
CALL_TIMEOUT = 30.0

# Protobuf wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


# ---- protobuf encoding (the few messages CRI image calls need) -----------------------


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return encode_varint((number << 3) | wire)


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field (string, bytes, embedded message)."""
    return _key(number, _LEN) + encode_varint(len(data)) + data


def field_string(number: int, text: str) -> bytes:
    return field_bytes(number, text.encode()) if text else b""


def field_varint(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + encode_varint(value) if value else b""


def image_spec(image: str) -> bytes:
    """ImageSpec{image=1}."""
    return field_string(1, image)


def auth_config(username: str, password: str) -> bytes:
    """AuthConfig{username=1, password=2}."""
    return field_string(1, username) + field_string(2, password)


def pull_image_request(image: str, *, username: str = "", password: str = "") -> bytes:
    """PullImageRequest{image=1: ImageSpec, auth=2: AuthConfig}; sandbox config omitted."""
    msg = field_bytes(1, image_spec(image))
    if username or password:
        msg += field_bytes(2, auth_config(username, password))
    return msg


def image_status_request(image: str) -> bytes:
    """ImageStatusRequest{image=1: ImageSpec} (verbose=2 left false)."""
    return field_bytes(1, image_spec(image))


def remove_image_request(image: str) -> bytes:
    """RemoveImageRequest{image=1: ImageSpec}."""
    return field_bytes(1, image_spec(image))


def list_images_request(image: str = "") -> bytes:
    """ListImagesRequest{filter=1: ImageFilter{image=1: ImageSpec}}; empty lists all."""
    return field_bytes(1, field_bytes(1, image_spec(image))) if image else b""


def version_request(version: str = "v1") -> bytes:
    return field_string(1, version)


# ---- protobuf decoding ---------------------------------------------------------------


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def iter_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field; unknown fields are kept."""
    pos = 0
    while pos < len(data):
        key, pos = decode_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = decode_varint(data, pos)
        elif wire == _LEN:
            length, pos = decode_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated length-delimited field")
            value, pos = data[pos:pos + length], pos + length
        elif wire == _I64:
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == _I32:
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _fields(data: bytes) -> dict[int, list[int | bytes]]:
    out: dict[int, list[int | bytes]] = {}
    for number, _, value in iter_fields(data):
        out.setdefault(number, []).append(value)
    return out


def _str(values: list[int | bytes] | None) -> str:
    if not values or not isinstance(values[-1], bytes):
        return ""
    return values[-1].decode()


def _strs(values: list[int | bytes] | None) -> list[str]:
    return [v.decode() for v in values or [] if isinstance(v, bytes)]


def _int(values: list[int | bytes] | None) -> int:
    if not values or not isinstance(values[-1], int):
        return 0
    return values[-1]


def _msg(values: list[int | bytes] | None) -> bytes | None:
    if not values or not isinstance(values[-1], bytes):
        return None
    return values[-1]


@dataclass(frozen=True)
class Image:
    """A CRI Image: id is the config digest; repo_digests hold repo@manifest-digest."""

    id: str
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0
    username: str = ""
    pinned: bool = False

    @property
    def digests(self) -> list[str]:
        """The manifest digests (sha256:...) from repo_digests."""
        return [d.rpartition("@")[2] for d in self.repo_digests if "@" in d]


@dataclass(frozen=True)
class RuntimeVersion:
    version: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


def decode_image(data: bytes) -> Image:
    """Image{id=1, repo_tags=2, repo_digests=3, size=4, username=6, pinned=8}."""
    f = _fields(data)
    return Image(
        id=_str(f.get(1)), repo_tags=_strs(f.get(2)), repo_digests=_strs(f.get(3)),
        size=_int(f.get(4)), username=_str(f.get(6)), pinned=bool(_int(f.get(8))),
    )


def decode_pull_image_response(data: bytes) -> str:
    """PullImageResponse{image_ref=1}."""
    return _str(_fields(data).get(1))


def decode_image_status_response(data: bytes) -> Image | None:
    """ImageStatusResponse{image=1}; an absent (or empty) image means not present."""
    raw = _msg(_fields(data).get(1))
    if not raw:
        return None
    image = decode_image(raw)
    return image if image.id else None


def decode_list_images_response(data: bytes) -> list[Image]:
    """ListImagesResponse{images=1 (repeated)}."""
    return [decode_image(v) for v in _fields(data).get(1, []) if isinstance(v, bytes)]


def decode_version_response(data: bytes) -> RuntimeVersion:
    f = _fields(data)
    return RuntimeVersion(_str(f.get(1)), _str(f.get(2)), _str(f.get(3)), _str(f.get(4)))


# ---- the client ----------------------------------------------------------------------


def _resolution(code_name: str, message: str) -> str:
    text = message.lower()
    if code_name in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and "pull" not in text:
        return "Start containerd and check the CRI socket path."
    if "x509" in text or "certificate" in text:
        return ("Put the mirror's CA in hosts.toml (`ca = ...`, also at the top level when "
                "`server` is the mirror) or check the certificate's names.")
    if "not found" in text:
        return "Check that the mirror holds this image (run the mirror sync) and the tag."
    if "unauthorized" in text or "authorization" in text or "401" in text:
        return "Check the mirror credentials in hosts.toml or the pull's auth."
    if "proxyconnect" in text or "proxy" in text or "forbidden" in text or "403" in text:
        return "Check the proxy drop-in and the proxy's allow-list."
    if "no such host" in text or "lookup" in text:
        return ("containerd tried to resolve the upstream name: check that hosts.toml exists "
                "for this registry, parses, and has a [host] entry (see containerd's log).")
    if "connection refused" in text or "i/o timeout" in text or "no route" in text:
        return "Check that the mirror (or proxy) is running and reachable from the node."
    return "See containerd's log for details."


def cri_error(action: str, image: str, socket: str, exc: Any) -> AirgapError:
    """An AirgapError naming the image and socket, carrying the gRPC status message."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    code_name = getattr(code, "name", str(code))
    what = f" {image}" if image else ""
    return AirgapError(
        f"CRI {action}{what} failed on {socket}: {details}",
        details=f"gRPC status: {code_name}\nmessage: {details}",
        resolution=_resolution(code_name, details),
    )


class CRIClient:
    """Talks to containerd's CRI plugin over its unix socket."""

    def __init__(self, socket: str | Path, *, timeout: float = CALL_TIMEOUT) -> None:
        import grpc

        self.socket = str(socket)
        self.timeout = timeout
        self._grpc = grpc
        self._channel = grpc.insecure_channel(f"unix://{Path(socket).resolve()}")

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CRIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: bytes, *, action: str, image: str = "",
              timeout: float | None = None) -> bytes:
        stub = self._channel.unary_unary(method)
        try:
            response = stub(request, timeout=timeout or self.timeout)
        except self._grpc.RpcError as exc:
            raise cri_error(action, image, self.socket, exc) from exc
        assert isinstance(response, bytes)
        return response

    def version(self) -> RuntimeVersion:
        raw = self._call(RUNTIME_SERVICE + "Version", version_request(), action="Version")
        return decode_version_response(raw)

    def pull_image(self, image: str, *, username: str = "", password: str = "",
                   timeout: float = PULL_TIMEOUT) -> str:
        """Pull through containerd (hosts.toml, proxy env apply); returns the image ref (id)."""
        raw = self._call(
            IMAGE_SERVICE + "PullImage",
            pull_image_request(image, username=username, password=password),
            action="pull of", image=image, timeout=timeout,
        )
        return decode_pull_image_response(raw)

    def image_status(self, image: str) -> Image | None:
        """The image as containerd knows it, or None when it is not present."""
        raw = self._call(IMAGE_SERVICE + "ImageStatus", image_status_request(image),
                         action="status of", image=image)
        return decode_image_status_response(raw)

    def list_images(self, image: str = "") -> list[Image]:
        raw = self._call(IMAGE_SERVICE + "ListImages", list_images_request(image),
                         action="image listing")
        return decode_list_images_response(raw)

    def remove_image(self, image: str) -> None:
        self._call(IMAGE_SERVICE + "RemoveImage", remove_image_request(image),
                   action="removal of", image=image)
