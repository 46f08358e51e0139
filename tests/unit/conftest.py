"""Unit tests open no sockets: any attempt fails the test that made it.

In-process only (a task run as a subprocess is not watched): creating an internet
socket, or connecting or binding any socket, raises. Tests that need a network or a
daemon belong in tests/integration.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.nosockets import SocketUsed


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_init = socket.socket.__init__

    def guarded_init(self: socket.socket, family: Any = -1, *args: Any, **kwargs: Any) -> None:
        if family in (socket.AF_INET, socket.AF_INET6) or family == -1:
            raise SocketUsed(f"a unit test opened an internet socket (family {family})")
        real_init(self, family, *args, **kwargs)

    def refuse(self: socket.socket, address: Any) -> None:
        raise SocketUsed(f"a unit test tried to reach {address!r}")

    monkeypatch.setattr(socket.socket, "__init__", guarded_init)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket.socket, "bind", refuse)
    yield
