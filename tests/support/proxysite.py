"""A proxied site in network namespaces: an air-gapped node whose only way out is a
squid in a dual-homed namespace, with a TLS registry behind it that only squid can
resolve by name (Go never proxies loopback, FACTS: so no 127.x here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.support.netns import Namespace, NetnsLab
from tests.support.registry import Registry, TestCA
from tests.support.squid import Squid


@dataclass
class ProxiedSite:
    node: Namespace
    proxy: Namespace
    upstream: Namespace
    registry: Registry
    squid: Squid
    ca: TestCA


def proxied_site(
    lab: NetnsLab,
    registry_factory: Callable[..., Registry],
    squid_factory: Callable[..., Squid],
    ca: TestCA,
    *,
    upstream_name: str,
    allow_upstream_address: bool = False,
) -> ProxiedSite:
    """Networks `airgap` (node, proxy) and `upstream` (proxy, registry; this process is
    on it too, to push test images). squid allows the registry's name, and its address
    as well when ``allow_upstream_address``."""
    lab.network("airgap")
    lab.network("upstream", host=True)
    node = lab("node", ["airgap"])
    proxy = lab("proxy", ["airgap", "upstream"])
    upstream = lab("upstream", ["upstream"])
    registry = registry_factory(
        tls=True, ca=ca, cert=ca.issue([upstream_name, upstream.address]),
        bind=upstream.address, netns=upstream.name,
    )
    allow = [upstream_name, *([upstream.address] if allow_upstream_address else [])]
    squid = squid_factory(
        bind=proxy.addresses["airgap"], netns=proxy.name,
        allow_hosts=allow, connect_ports=[registry.port],
        hosts={upstream_name: upstream.address},
    )
    return ProxiedSite(node, proxy, upstream, registry, squid, ca)
