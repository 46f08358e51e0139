"""RegistryClient.resolve against a real Distribution registry, checked against regctl.

Offline-built images (one multi-platform index among them) are pushed to a loopback
registry; every reference resolves to the digest the push reported and to the digest and
media type `regctl manifest get` reports, and an index resolves per platform to the
manifests it names. Then https with a private CA and a login, and the refusals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from airgap.errors import AirgapError
from airgap.mediatypes import OCI_INDEX, OCI_MANIFEST
from airgap.plan.images import parse_image_ref
from airgap.registry import RegistryAccessError, RegistryClient, upstream_client
from airgap.render.sync import RegistryAccess
from tests.support.ocibuild import make_test_images, regctl_for
from tests.support.regclient import private_regclient_home  # noqa: F401 (autouse)
from tests.support.registry import Registry, TestCA

pytestmark = pytest.mark.integration

NAMES = ["app/one:1", "app/two:1", "tools/three:2"]
MULTI = "test/multi:1"
USER, PASSWORD = "resolve-user", "resolve-pass-123"


def index_children(reg: Registry, repo: str, tag: str) -> dict[str, str]:
    """platform -> manifest digest, read from the registry's own answer."""
    status, _, body = reg.request("GET", f"/v2/{repo}/manifests/{tag}",
                                  headers={"Accept": OCI_INDEX})
    assert status == 200
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
            for m in json.loads(body)["manifests"]}


def test_resolve_agrees_with_the_push_and_with_regctl(
    registry_factory: Callable[..., Registry], tmp_path: Path
) -> None:
    reg = registry_factory("upstream")
    digests = make_test_images(reg, NAMES, multi_platform=MULTI, workdir=tmp_path / "build")
    regctl = regctl_for(reg, tmp_path / "regctl")
    client = upstream_client(RegistryAccess(reg.address, tls="disabled"))
    for name, pushed in digests.items():
        ref = parse_image_ref(f"{reg.address}/{name}")
        platforms = ["linux/amd64", "linux/arm64"] if name == MULTI else ["linux/amd64"]
        got = client.resolve(ref, platforms)
        head = regctl.run(["manifest", "get", str(ref), "--format",
                           "{{ .GetDescriptor.Digest }} {{ .GetDescriptor.MediaType }}"])
        assert (got.digest, got.media_type) == tuple(head.stdout.split()), name
        assert got.digest == pushed, name
        if name == MULTI:
            assert got.media_type == OCI_INDEX
            assert got.platforms == index_children(reg, *ref.path.split(":"))
        else:
            assert got.media_type == OCI_MANIFEST
            assert got.platforms == {"linux/amd64": pushed}
        pinned = client.resolve(ref.with_digest(pushed), platforms)
        assert (pinned.digest, pinned.platforms) == (got.digest, got.platforms)
    # A manifest and its config per single-platform image, the index alone for MULTI;
    # twice (by tag, then pinned). No process per image, one connection throughout.
    assert client.requests == 2 * (2 * len(NAMES) + 1)
    client.close()


def test_resolve_refuses_what_is_not_there(
    registry_factory: Callable[..., Registry], tmp_path: Path
) -> None:
    reg = registry_factory("upstream")
    make_test_images(reg, NAMES[:1], multi_platform=MULTI, workdir=tmp_path / "build")
    client = upstream_client(RegistryAccess(reg.address, tls="disabled"))
    with pytest.raises(AirgapError, match=r"has no linux/arm64 variant") as err:
        client.resolve(parse_image_ref(f"{reg.address}/{NAMES[0]}"), ["linux/arm64"])
    assert err.value.resolution
    with pytest.raises(AirgapError, match=r"has no linux/s390x variant"):
        client.resolve(parse_image_ref(f"{reg.address}/{MULTI}"), ["linux/amd64", "linux/s390x"])
    with pytest.raises(RegistryAccessError, match=r"not found") as missing:
        client.resolve(parse_image_ref(f"{reg.address}/app/none:1"), ["linux/amd64"])
    assert missing.value.resolution


def test_resolve_over_https_with_a_private_ca_and_a_login(
    registry_factory: Callable[..., Registry], test_ca: TestCA, tmp_path: Path
) -> None:
    reg = registry_factory("private", tls=True, ca=test_ca, htpasswd=(USER, PASSWORD))
    digests = make_test_images(reg, NAMES[:1], multi_platform=MULTI, workdir=tmp_path / "build")
    ca = test_ca.pem.decode()

    def client(credentials: tuple[str, str] | None = None) -> RegistryClient:
        return RegistryClient(reg.address, ca_pem=ca, credentials=credentials,
                              label="the private registry")

    ref = parse_image_ref(f"{reg.address}/{MULTI}")
    got = client(credentials=(USER, PASSWORD)).resolve(ref, ["linux/arm64"])
    assert got.digest == digests[MULTI] and set(got.platforms) == {"linux/arm64"}
    with pytest.raises(RegistryAccessError, match=r"requires a login") as err:
        client().resolve(ref, ["linux/amd64"])
    assert err.value.resolution
    with pytest.raises(RegistryAccessError, match=r"rejected the credentials") as err:
        client(credentials=(USER, "wrong")).resolve(ref, ["linux/amd64"])
    assert err.value.resolution
    with pytest.raises(RegistryAccessError, match=r"not trusted") as err:
        RegistryClient(reg.address, credentials=(USER, PASSWORD)).resolve(ref, ["linux/amd64"])
    assert err.value.resolution
