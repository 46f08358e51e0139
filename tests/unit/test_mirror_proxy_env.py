"""The mirror's in-process registry client follows HTTPS_PROXY/NO_PROXY like regsync.

A connected machine behind a proxy must not dial upstream registries directly from
Python while regsync and regctl go through the proxy; no sockets are opened here.
"""

from __future__ import annotations

import pytest

from airgap.mirror import RegistryClient, _proxy_for


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
              "ALL_PROXY", "all_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(k, raising=False)


def test_no_proxy_configured_means_direct() -> None:
    assert _proxy_for("ghcr.io", True) is None


def test_https_proxy_for_tls_http_proxy_for_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://10.213.1.3:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://10.213.1.9:8080")
    assert _proxy_for("ghcr.io", True) == ("10.213.1.3", 3128)
    assert _proxy_for("10.213.0.2", False) == ("10.213.1.9", 8080)


def test_no_proxy_and_loopback_bypass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "10.213.1.3:3128")
    monkeypatch.setenv("no_proxy", "10.213.0.2,mirror.example")
    assert _proxy_for("10.213.0.2", True) is None
    assert _proxy_for("mirror.example", True) is None
    assert _proxy_for("127.0.0.1", True) is None
    assert _proxy_for("localhost", True) is None
    assert _proxy_for("ghcr.io", True) == ("10.213.1.3", 3128)


def test_client_tunnels_through_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://10.213.1.3:3128")
    conn = RegistryClient("ghcr.io")._conn()
    assert (conn.host, conn.port) == ("10.213.1.3", 3128)
    assert conn._tunnel_host == "ghcr.io" and conn._tunnel_port == 443  # type: ignore[attr-defined]
    monkeypatch.setenv("NO_PROXY", "10.213.0.2")
    c2 = RegistryClient("10.213.0.2:5443")._conn()
    assert (c2.host, c2.port) == ("10.213.0.2", 5443) and c2._tunnel_host is None  # type: ignore[attr-defined]
