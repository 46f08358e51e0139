"""The connected side of the proof: this machine, behind the lab's proxy.

It acts as a connected workstation behind the site's proxy would: prepare, the
side-load export and the mirror fill (regctl, regsync and the library's own registry
client) get HTTPS_PROXY (the lab's squid, which alone resolves ghcr.io and friends to
the simulated upstream), NO_PROXY (the lab registry) and SSL_CERT_FILE (the system CAs
plus the lab's CAs). While they run, this process refuses to resolve the upstream
names itself, so that nothing can reach the real registries by mistake.

The refusal is a scope around ``socket.getaddrinfo``, not an injected resolver: the
code that resolves is the library's (airgap's registry clients, on its fan-out worker
threads), which the lab does not own and which takes no resolver, and the tools are
subprocesses that only the environment reaches. So the scope is process-wide while it
is active, which is exactly what those worker threads need, and it is counted: nested
or overlapping activations (any thread) install the guard once and the last one out
restores the original function and environment.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap import mirror as mirror_mod
from airgap import sideload
from airgap.bundle import Bundle, PrepareReport, prepare_bundle
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.plan import Plan
from airgap.plan.lock import ImageLock
from lab.state import LabState
from lab.topology import PROXY_PORT, LabSpec

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class _ConnectedScope:
    """The one place that swaps ``socket.getaddrinfo`` and the tools' environment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._key: tuple[tuple[tuple[str, str], ...], frozenset[str]] | None = None
        self._saved_env: dict[str, str | None] = {}
        self._real: Any = None

    @contextlib.contextmanager
    def active(self, env: Mapping[str, str], blocked_hosts: tuple[str, ...]) -> Iterator[None]:
        key = (tuple(sorted(env.items())), frozenset(blocked_hosts))
        with self._lock:
            if self._depth == 0:
                self._install(env, key[1])
                self._key = key
            elif key != self._key:
                raise AirgapError(
                    "Another connected side is already active in this process",
                    resolution="Run one lab proof per process (the connected side sets "
                    "process-wide proxy settings).")
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._restore()
                    self._key = None

    def _install(self, env: Mapping[str, str], blocked: frozenset[str]) -> None:
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        real = self._real = socket.getaddrinfo

        def guarded(hostname: Any, *args: Any, **kwargs: Any) -> Any:
            name = hostname.decode() if isinstance(hostname, bytes) else str(hostname)
            if name.rstrip(".").lower() in blocked:
                raise socket.gaierror(
                    socket.EAI_NONAME,
                    f"k8s-airgap lab: {name} must be reached through the lab proxy, "
                    "never resolved here")
            return real(hostname, *args, **kwargs)

        socket.getaddrinfo = guarded  # type: ignore[assignment]

    def _restore(self) -> None:
        socket.getaddrinfo = self._real
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_env = {}


_SCOPE = _ConnectedScope()


@dataclass(frozen=True)
class Connected:
    """How this machine acts as the connected side of the lab."""

    env: dict[str, str]
    upstream_hosts: tuple[str, ...]
    proxy: str

    def active(self) -> contextlib.AbstractContextManager[None]:
        """Set the environment for the tools; refuse upstream names in this process."""
        return _SCOPE.active(self.env, self.upstream_hosts)

    def prepare(self, plan: Plan, bundle: Path, **kw: Any) -> PrepareReport:
        """prepare through the lab proxy: snaps, and images.lock from the upstream."""
        with self.active():
            return prepare_bundle(plan, bundle, **kw)

    def export_archives(self, lock: ImageLock, platform: str, bundle: Path
                        ) -> list[sideload.ArchiveReport]:
        """The side-load archives into the bundle (regctl, through the proxy)."""
        with self.active():
            return sideload.export_images(
                sideload.select_images(lock.refs(), platform, lock=lock),
                Bundle(bundle).images_dir, platform)

    def fill_mirror(self, plan: Plan, lock: ImageLock) -> mirror_mod.MirrorReport:
        """The lab registry filled from the upstream (regsync through the proxy)."""
        with self.active():
            return mirror_mod.mirror_images(plan, lock.refs(), lock=lock)


def connected_side(st: LabState, spec: LabSpec, work: Path) -> Connected:
    """Behind the lab proxy, trusting the system CAs and the lab's CAs."""
    prx, reg = spec.member("proxy"), spec.member("registry")
    proxy = f"http://{prx.services}:{PROXY_PORT}"
    no_proxy = ",".join(a for a in (reg.airgap, reg.services, "localhost", "127.0.0.1") if a)
    bundle = work / "connected-ca.pem"
    parts = [SYSTEM_CA_BUNDLE.read_bytes()] if SYSTEM_CA_BUNDLE.is_file() else []
    parts += [Path(f).read_bytes() for f in (st.public_ca_file, st.ca_file) if f]
    write_atomic(bundle, b"\n".join(parts))
    home = work / "connected-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HTTPS_PROXY": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy, "http_proxy": proxy,
        "NO_PROXY": no_proxy, "no_proxy": no_proxy, "SSL_CERT_FILE": str(bundle),
        "REGCTL_CONFIG": str(home / "regctl.json"), "DOCKER_CONFIG": str(home / "docker"),
    }
    return Connected(env, tuple(spec.upstream_hosts), proxy)
