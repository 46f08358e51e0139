"""The registry fixture serves real HTTP/HTTPS, enforces htpasswd, and survives a restart."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.registry import Registry, TestCA

pytestmark = pytest.mark.integration

RegistryFactory = Callable[..., Registry]


def test_http_registry_keeps_data_across_restart(registry_factory: RegistryFactory) -> None:
    reg = registry_factory()
    assert reg.url == f"http://127.0.0.1:{reg.port}"
    digest = reg.put_blob("test/one", b"hello")
    assert reg.has_blob("test/one", digest)
    reg.stop()
    assert not reg.running
    reg.start()
    assert reg.has_blob("test/one", digest), "data must survive stop()/start()"


def test_https_registry_verifies_with_ca_only(
    registry_factory: RegistryFactory, test_ca: TestCA
) -> None:
    reg = registry_factory(tls=True, ca=test_ca, hostname="localhost")
    assert reg.url.startswith("https://localhost:")
    assert reg.ca_file == test_ca.ca_cert
    status, _, _ = reg.request("GET", "/v2/")
    assert status == 200
    other = TestCA.create(test_ca.directory.parent / "other-ca")
    wrong: Any = Registry(**{**reg.__dict__, "ca_file": other.ca_cert, "_proc": None})
    with pytest.raises(ssl.SSLCertVerificationError):
        wrong.request("GET", "/v2/")


def test_htpasswd_registry_rejects_anonymous(registry_factory: RegistryFactory) -> None:
    reg = registry_factory(htpasswd=("mirror", "s3cret-pass"))
    status, headers, _ = reg.request("GET", "/v2/", auth=False)
    assert status == 401
    assert "basic" in headers.get("www-authenticate", "").lower()
    status, _, _ = reg.request("GET", "/v2/")
    assert status == 200
    assert "s3cret-pass" not in repr(reg)
    assert "s3cret-pass" not in reg.config_file.read_text()
