"""Every way the registry client can fail reaches the user with a resolution (no sockets:
the wire and the token service are scripted)."""

from __future__ import annotations

import io
import urllib.error
from email.message import Message
from typing import Any

import pytest

from airgap.registry import RegistryAccessError, RegistryClient, upstream_client
from airgap.registry import client as registry
from airgap.render.sync import RegistryAccess

Reply = tuple[int, dict[str, str], bytes]


class OneAnswer(RegistryClient):
    """Every request gets the same reply."""

    def __init__(self, reply: Reply, **kwargs: Any) -> None:
        super().__init__("reg.example:5000", tls=False, **kwargs)
        self.reply = reply

    def _send(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        return self.reply


def bearer(realm: str = 'realm="https://auth.example/token",service="reg"') -> Reply:
    return 401, {"www-authenticate": f"Bearer {realm}"}, b""


def resolution_of(fn: Any) -> str:
    with pytest.raises(RegistryAccessError) as err:
        fn()
    assert err.value.resolution, f"no resolution for: {err.value.brief}"
    return err.value.resolution


def test_unsupported_authentication_says_what_is_supported() -> None:
    client = OneAnswer((401, {"www-authenticate": 'Negotiate realm="x"'}, b""))
    assert "basic or bearer" in resolution_of(client.ping)


def test_bearer_challenge_without_realm() -> None:
    client = OneAnswer(bearer('service="reg"'))
    assert "token service" in resolution_of(client.ping)


@pytest.mark.parametrize("failure", [
    urllib.error.HTTPError("https://auth.example/token", 500, "boom", Message(), io.BytesIO()),
    urllib.error.URLError("no route to host"),
])
def test_token_service_failures(monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    def urlopen(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(registry.urllib.request, "urlopen", urlopen)
    assert "token service" in resolution_of(OneAnswer(bearer()).ping)


def test_token_service_refusing_anonymous_upstream_says_anonymous(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def urlopen(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.HTTPError("https://auth.example/token", 401, "no", Message(),
                                     io.BytesIO())

    monkeypatch.setattr(registry.urllib.request, "urlopen", urlopen)
    client = upstream_client(RegistryAccess("reg.example:5000", tls="disabled"))
    monkeypatch.setattr(client, "_send", lambda *a: bearer())
    assert "anonymous" in resolution_of(client.ping)


def test_token_service_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    class Empty(io.BytesIO):
        def __enter__(self) -> Empty:
            return self

    monkeypatch.setattr(registry.urllib.request, "urlopen", lambda *a, **k: Empty(b"{}"))
    assert "token service" in resolution_of(OneAnswer(bearer()).ping)


def test_login_required_without_credentials() -> None:
    client = OneAnswer((401, {"www-authenticate": 'Basic realm="reg"'}, b""))
    assert resolution_of(client.ping) == "Give credentials for this registry."


def test_denied_and_failing_answers() -> None:
    assert "credentials" in resolution_of(lambda: OneAnswer((403, {}, b"")).has_blob("a", "d"))
    assert "healthy" in resolution_of(lambda: OneAnswer((500, {}, b"")).has_blob("a", "d"))
    assert "/v2/" in resolution_of(OneAnswer((404, {}, b"")).ping)


def test_unreachable_registry() -> None:
    class Refused:
        def request(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionRefusedError(111, "Connection refused")

        def close(self) -> None:
            pass

    class Down(RegistryClient):
        def _conn(self) -> Any:
            return Refused()

    client = Down("reg.example:5000", tls=False, label="the mirror")
    assert resolution_of(client.ping).startswith("Start the mirror")


def test_docker_hub_is_asked_at_its_api_host_not_at_docker_io() -> None:
    # The lab's upstream answers to every Docker Hub name, so only this test can tell.
    from airgap.registry import api_host, upstream_client
    from airgap.render.sync import RegistryAccess

    assert upstream_client(RegistryAccess("docker.io")).url == "https://registry-1.docker.io"
    assert upstream_client(RegistryAccess("ghcr.io")).url == "https://ghcr.io"
    assert api_host("127.0.0.1:5000") == "127.0.0.1:5000"
