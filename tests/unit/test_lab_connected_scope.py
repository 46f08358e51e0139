"""The connected side's scope: counted, so overlapping activations (the proof's threads)
keep the guard until the last one leaves, and then restore exactly what was there."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from airgap.errors import AirgapError
from lab.proof import Connected

PROXY = "http://10.213.1.3:3128"


def side(marker: str = "1") -> Connected:
    return Connected({"HTTPS_PROXY": PROXY, "K8S_AIRGAP_UNIT_MARKER": marker}, ("ghcr.io",),
                     PROXY)


@pytest.fixture(autouse=True)
def no_real_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """The function the guard wraps answers from here: a broken guard never sends a query."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **kw: [("resolved", a)])


def blocked() -> bool:
    try:
        socket.getaddrinfo("ghcr.io", 443)
    except socket.gaierror as exc:
        return "through the lab proxy" in str(exc)
    return False


def test_overlapping_activations_from_threads_keep_the_guard_until_the_last_leaves() -> None:
    real = socket.getaddrinfo
    conn = side()
    entered, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def worker() -> None:
        with conn.active():
            entered.set()
            release.wait(5)
            seen.append(blocked())

    t = threading.Thread(target=worker)
    with conn.active():
        t.start()
        assert entered.wait(5)
    # The main thread left first: the worker's activation still holds the guard.
    assert blocked() and os.environ["K8S_AIRGAP_UNIT_MARKER"] == "1"
    release.set()
    t.join(5)
    assert seen == [True]
    assert socket.getaddrinfo is real and not blocked()
    assert "K8S_AIRGAP_UNIT_MARKER" not in os.environ


def test_nested_activation_restores_once_and_another_side_is_refused() -> None:
    real = socket.getaddrinfo
    conn = side()
    with conn.active():
        with conn.active():
            assert blocked()
        assert blocked() and socket.getaddrinfo is not real
        with pytest.raises(AirgapError, match="already active") as info, side("2").active():
            pass  # pragma: no cover
        assert info.value.resolution
        assert os.environ["K8S_AIRGAP_UNIT_MARKER"] == "1"
    assert socket.getaddrinfo is real
    assert "K8S_AIRGAP_UNIT_MARKER" not in os.environ
