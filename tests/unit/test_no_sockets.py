"""The unit suite's socket guard (tests/unit/conftest.py) really refuses."""

from __future__ import annotations

import socket

import pytest

from tests.support.nosockets import SocketUsed


def test_an_internet_socket_is_refused() -> None:
    with pytest.raises(SocketUsed, match="internet socket"):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)


def test_a_unix_socket_cannot_connect() -> None:
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(SocketUsed, match="tried to reach"):
        s.connect("/run/containerd/containerd.sock")
