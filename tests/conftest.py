"""Fixtures every test can use: real daemons, each cleaned up at the end of the test.

Area-specific fixtures belong in tests/integration/conftest_<area>.py (loaded with
`pytest_plugins`) or in the test module itself, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.containerd import Containerd, start_containerd
from tests.support.netns import NetnsLab
from tests.support.registry import Registry, TestCA, start_registry
from tests.support.require import require_binary, require_root
from tests.support.squid import Squid, start_squid


@pytest.fixture
def test_ca(tmp_path: Path) -> TestCA:
    """A throwaway CA (openssl) in the test's temp dir."""
    require_binary("openssl")
    return TestCA.create(tmp_path / "test-ca")


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """start_registry(...) with workdir chosen per call; every registry is stopped at the end.

    Call it as `registry_factory(tls=True, ca=test_ca, htpasswd=("u", "p"), ...)`;
    `name="mirror"` picks the sub-directory (default reg0, reg1, ...).
    """
    require_binary("docker-registry")
    started: list[Registry] = []

    def make(name: str | None = None, **kwargs: Any) -> Registry:
        workdir = tmp_path / (name or f"reg{len(started)}")
        reg = start_registry(workdir, **kwargs)
        started.append(reg)
        return reg

    yield make
    for reg in reversed(started):
        reg.stop()


@pytest.fixture
def containerd_factory(tmp_path: Path) -> Iterator[Callable[..., Containerd]]:
    """start_containerd(...) per call (hosts_dir=, env=, netns=); all cleaned up at the end."""
    require_root()
    require_binary("containerd")
    require_binary("ctr")
    started: list[Containerd] = []

    def make(name: str | None = None, **kwargs: Any) -> Containerd:
        ctrd = start_containerd(tmp_path / (name or f"containerd{len(started)}"), **kwargs)
        started.append(ctrd)
        return ctrd

    yield make
    for ctrd in reversed(started):
        ctrd.cleanup()


@pytest.fixture
def squid_factory(tmp_path: Path) -> Iterator[Callable[..., Squid]]:
    """start_squid(...) per call (bind=, port=, allow_hosts=, connect_ports=, hosts=, netns=)."""
    require_root()
    require_binary("squid")
    started: list[Squid] = []

    def make(name: str | None = None, **kwargs: Any) -> Squid:
        squid = start_squid(tmp_path / (name or f"squid{len(started)}"), **kwargs)
        started.append(squid)
        return squid

    yield make
    for squid in reversed(started):
        squid.cleanup()


@pytest.fixture
def netns_factory() -> Iterator[NetnsLab]:
    """A NetnsLab: `netns_factory.network("up", host=True)`, `netns_factory("client",
    networks=["up"])` -> Namespace. Everything is deleted at the end, even on failure.

    Request it before the daemon fixtures (registry_factory, ...) so daemons inside the
    namespaces are stopped first.
    """
    require_root()
    require_binary("nsenter")
    require_binary("ip")
    lab = NetnsLab()
    try:
        yield lab
    finally:
        lab.cleanup()

