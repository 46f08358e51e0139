"""Proxy mode end to end in namespaces: containerd with the environment of OUR rendered
drop-in pulls through a real squid; without it, the same pull fails.

node (airgap net, no route out) --> squid (dual-homed) --> registry (upstream net).
The registry is known by a name only squid resolves, so the node could not reach it
even by name; Go never proxies loopback, so no loopback address is involved.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

import pytest

from airgap.cri import CRIClient
from airgap.errors import AirgapError
from airgap.plan import Plan, parse_plan
from airgap.render.proxy import render_proxy_dropin
from tests.support.containerd import Containerd
from tests.support.netns import NetnsLab
from tests.support.ocibuild import make_test_images
from tests.support.proxysite import ProxiedSite, proxied_site
from tests.support.registry import Registry, TestCA
from tests.support.require import require_binary
from tests.support.squid import Squid

pytestmark = pytest.mark.integration

UPSTREAM_NAME = "registry.upstream.test"  # resolved by squid's hosts file only


@pytest.fixture
def site(
    netns_factory: NetnsLab,
    registry_factory: Callable[..., Registry],
    squid_factory: Callable[..., Squid],
    test_ca: TestCA,
) -> ProxiedSite:
    return proxied_site(netns_factory, registry_factory, squid_factory, test_ca,
                        upstream_name=UPSTREAM_NAME)


def proxy_plan(site: ProxiedSite) -> Plan:
    return parse_plan({
        "access": ["proxy"],
        "proxy": {"http": site.squid.url, "https": site.squid.url},
        "nodes": [{"name": "node-1", "address": site.node.address, "transport": "local"}],
    }, source="airgap.yaml")


def dropin_environment(text: str) -> dict[str, str]:
    """What systemd puts in the unit's environment from Environment= lines."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("Environment="):
            for word in shlex.split(line[len("Environment="):]):
                key, _, value = word.partition("=")
                env[key] = value.replace("%%", "%")
    return env


def connects(site: ProxiedSite) -> list[str]:
    return [ln for ln in site.squid.access_lines() if f"CONNECT {UPSTREAM_NAME}:" in ln]


def test_containerd_with_rendered_dropin_pulls_through_squid_and_fails_without(
    site: ProxiedSite, containerd_factory: Callable[..., Containerd]
) -> None:
    require_binary("curl")
    reg = site.registry
    digests = make_test_images(reg, ["library/alpha:1"], multi_platform=None)
    ref = f"{UPSTREAM_NAME}:{reg.port}/library/alpha:1"
    # Isolation, by route and by failing to reach the upstream directly.
    assert "unreachable" in site.node.run(
        ["ip", "route", "get", site.upstream.address], check=False).stderr.lower()
    direct = site.node.run(["curl", "-sS", "--max-time", "5", "--cacert", str(site.ca.ca_cert),
                            f"https://{site.upstream.address}:{reg.port}/v2/"], check=False)
    assert direct.returncode != 0

    env = dropin_environment(render_proxy_dropin(proxy_plan(site)).text)
    assert env["HTTPS_PROXY"] == env["https_proxy"] == site.squid.url
    assert site.node.address in env["NO_PROXY"].split(",")
    # The registry's private CA stands in for the system trust store of a real node.
    trust = {"SSL_CERT_FILE": str(site.ca.ca_cert)}

    without = containerd_factory("without", netns=site.node.name, env=trust)
    with CRIClient(without.socket) as cri, pytest.raises(AirgapError) as failed:
        cri.pull_image(ref)
    # The node cannot even resolve the name, let alone route to the registry.
    why = str(failed.value).lower()
    assert UPSTREAM_NAME in why and ("lookup" in why or "unreachable" in why), why
    without.stop()
    assert connects(site) == []

    with_dropin = containerd_factory("with", netns=site.node.name, env={**trust, **env})
    with CRIClient(with_dropin.socket) as cri:
        cri.pull_image(ref)
        image = cri.image_status(ref)
    assert image is not None and image.digests == [digests["library/alpha:1"]]
    with_dropin.stop()  # squid logs a CONNECT when the tunnel closes
    deadline = time.monotonic() + 10
    while not connects(site) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any("TCP_TUNNEL/200" in ln for ln in connects(site)), site.squid.access_lines()
