"""RegistryClient.resolve against a scripted registry (no sockets): tag -> digest, and per
platform the manifest a runtime pulls, as bundle.resolve_image gets them from regctl."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from airgap.errors import AirgapError
from airgap.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from airgap.plan.images import parse_image_ref
from airgap.registry import RegistryAccessError, RegistryClient, pick_platforms

HOST = "reg.example:5000"
Reply = tuple[int, dict[str, str], bytes]


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


class ScriptedClient(RegistryClient):
    """A RegistryClient whose wire is a dict: (method, path) -> reply; records requests."""

    def __init__(self, replies: dict[tuple[str, str], Reply], **kwargs: Any) -> None:
        super().__init__(HOST, tls=False, **kwargs)
        self.replies = replies
        self.sent: list[tuple[str, str]] = []

    def _send(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        self.sent.append((method, path))
        return self.replies.get((method, path), (404, {}, b"{}"))


def put_manifest(replies: dict[tuple[str, str], Reply], repo: str, refs: list[str],
                 data: dict[str, Any], media: str | None) -> str:
    body = json.dumps(data).encode()
    headers = {"content-type": media} if media else {}
    d = digest_of(body)
    for ref in [*refs, d]:
        replies[("GET", f"/v2/{repo}/manifests/{ref}")] = (200, headers, body)
    return d


def put_image(replies: dict[tuple[str, str], Reply], repo: str, tag: str | None,
              platform: dict[str, str], media: str = OCI_MANIFEST) -> str:
    config = json.dumps({**platform, "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cfg = digest_of(config)
    replies[("GET", f"/v2/{repo}/blobs/{cfg}")] = (200, {}, config)
    manifest = {"schemaVersion": 2, "mediaType": media,
                "config": {"digest": cfg, "size": len(config)}, "layers": []}
    return put_manifest(replies, repo, [tag] if tag else [], manifest, media)


def put_index(replies: dict[tuple[str, str], Reply], repo: str, tag: str,
              platforms: list[dict[str, str]],
              media: str | None = OCI_INDEX) -> tuple[str, list[str]]:
    children = [put_image(replies, repo, None, p) for p in platforms]
    index: dict[str, Any] = {"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": 1, "platform": p}
        for d, p in zip(children, platforms, strict=True)]}
    if media:
        index["mediaType"] = media
    return put_manifest(replies, repo, [tag], index, media), children


AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64"}
ARMV7 = {"os": "linux", "architecture": "arm", "variant": "v7"}


def test_single_platform_image_resolves_to_its_manifest() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    d = put_image(replies, "app/one", "1", AMD64)
    client = ScriptedClient(replies)
    got = client.resolve(parse_image_ref(f"{HOST}/app/one:1"), ["linux/amd64"])
    assert (got.digest, got.media_type, got.platforms) == (d, OCI_MANIFEST, {"linux/amd64": d})
    assert str(got.ref) == f"{HOST}/app/one:1"
    assert [m for m, _ in client.sent] == ["GET", "GET"]  # the manifest, then its config


def test_docker_v2_manifest_keeps_its_media_type() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    d = put_image(replies, "app/one", "1", AMD64, media=DOCKER_MANIFEST)
    got = ScriptedClient(replies).resolve(parse_image_ref(f"{HOST}/app/one:1"), ["linux/amd64"])
    assert (got.digest, got.media_type) == (d, DOCKER_MANIFEST)


def test_index_resolves_each_platform_to_its_manifest() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    index, (amd, arm, _) = put_index(replies, "multi", "1", [AMD64, ARM64, ARMV7])
    client = ScriptedClient(replies)
    got = client.resolve(parse_image_ref(f"{HOST}/multi:1"), ["linux/amd64", "linux/arm64/v8"])
    assert got.digest == index and got.media_type == OCI_INDEX
    assert got.platforms == {"linux/amd64": amd, "linux/arm64/v8": arm}  # arm64 implies v8
    assert client.sent == [("GET", "/v2/multi/manifests/1")]  # an index needs one request


def test_index_known_by_shape_when_the_registry_names_no_type() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    index, (amd, _) = put_index(replies, "multi", "1", [AMD64, ARM64], media=None)
    got = ScriptedClient(replies).resolve(parse_image_ref(f"{HOST}/multi:1"), ["linux/amd64"])
    assert got.digest == index and got.platforms == {"linux/amd64": amd}


def test_docker_manifest_list_is_an_index() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    index, (_, arm) = put_index(replies, "multi", "1", [AMD64, ARM64], media=DOCKER_LIST)
    got = ScriptedClient(replies).resolve(parse_image_ref(f"{HOST}/multi:1"), ["linux/arm64"])
    assert got.digest == index and got.media_type == DOCKER_LIST
    assert got.platforms == {"linux/arm64": arm}


def test_pinned_reference_asks_for_the_digest_not_the_tag() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    d = put_image(replies, "app/one", "1", AMD64)
    client = ScriptedClient(replies)
    got = client.resolve(parse_image_ref(f"{HOST}/app/one:1@{d}"), ["linux/amd64"])
    assert got.digest == d
    assert client.sent[0] == ("GET", f"/v2/app/one/manifests/{d}")


def test_a_platform_the_image_lacks_is_refused_with_its_fix() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    put_image(replies, "app/one", "1", AMD64)
    put_index(replies, "multi", "1", [AMD64, ARMV7])
    client = ScriptedClient(replies)
    with pytest.raises(AirgapError, match=r"app/one:1 has no linux/arm64 variant") as err:
        client.resolve(parse_image_ref(f"{HOST}/app/one:1"), ["linux/amd64", "linux/arm64"])
    assert "Remove that platform" in (err.value.resolution or "")
    with pytest.raises(AirgapError, match=r"has no linux/arm/v6 variant"):
        client.resolve(parse_image_ref(f"{HOST}/multi:1"), ["linux/arm/v6"])


def test_unknown_tag_is_an_access_error_with_a_resolution() -> None:
    with pytest.raises(RegistryAccessError, match=r"image .*app/none:1 not found") as err:
        ScriptedClient({}).resolve(parse_image_ref(f"{HOST}/app/none:1"), ["linux/amd64"])
    assert err.value.resolution


def test_unexpected_manifest_is_an_access_error_with_a_resolution() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    put_manifest(replies, "odd", ["1"], {"schemaVersion": 2, "layers": []}, OCI_MANIFEST)
    with pytest.raises(RegistryAccessError, match=r"unexpected manifest") as err:
        ScriptedClient(replies).resolve(parse_image_ref(f"{HOST}/odd:1"), ["linux/amd64"])
    assert err.value.resolution


def test_config_blob_behind_a_redirect_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    replies: dict[tuple[str, str], Reply] = {}
    d = put_image(replies, "app/one", "1", AMD64)
    key = next(k for k in replies if "/blobs/" in k[1])
    config = replies[key][2]
    replies[key] = (307, {"location": "https://storage.example/blob?sig=1"}, b"")
    client = ScriptedClient(replies)
    followed: list[str] = []

    def follow(url: str) -> bytes:
        followed.append(url)
        return config

    monkeypatch.setattr(client, "_follow", follow)
    got = client.resolve(parse_image_ref(f"{HOST}/app/one:1"), ["linux/amd64"])
    assert got.platforms == {"linux/amd64": d}
    assert followed == ["https://storage.example/blob?sig=1"]


def test_a_blob_that_does_not_match_its_digest_is_refused() -> None:
    replies: dict[tuple[str, str], Reply] = {}
    put_image(replies, "app/one", "1", AMD64)
    key = next(k for k in replies if "/blobs/" in k[1])
    replies[key] = (200, {}, b'{"os": "linux", "architecture": "amd64", "x": 1}')
    with pytest.raises(RegistryAccessError, match=r"does not match its digest") as err:
        ScriptedClient(replies).resolve(parse_image_ref(f"{HOST}/app/one:1"), ["linux/amd64"])
    assert err.value.resolution


def test_pick_platforms_takes_the_first_match_and_leaves_out_the_rest() -> None:
    candidates = [("linux/amd64", "a1"), ("linux/amd64", "a2"), ("linux/arm64/v8", "b")]
    assert pick_platforms(candidates, ["linux/amd64", "linux/arm64", "linux/s390x"]) == {
        "linux/amd64": "a1", "linux/arm64": "b"}
