"""squid in a namespace: CONNECT to allowed registries only, from an air-gapped client
namespace that has no other way out; containerd's CRI pull goes through it when the
daemon has HTTPS_PROXY (what the proxy drop-in does on a node)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import pytest

from airgap.cri import CRIClient
from tests.support.containerd import Containerd
from tests.support.netns import NetnsLab
from tests.support.ocibuild import make_test_images
from tests.support.proxysite import ProxiedSite, proxied_site
from tests.support.registry import Registry, TestCA
from tests.support.require import require_binary
from tests.support.squid import Squid

pytestmark = pytest.mark.integration

UPSTREAM_NAME = "upstream.airgap.test"  # resolved by squid's hosts file only


@pytest.fixture
def site(
    netns_factory: NetnsLab,
    registry_factory: Callable[..., Registry],
    squid_factory: Callable[..., Squid],
    test_ca: TestCA,
) -> ProxiedSite:
    return proxied_site(netns_factory, registry_factory, squid_factory, test_ca,
                        upstream_name=UPSTREAM_NAME, allow_upstream_address=True)


def _curl(site: ProxiedSite, url: str, *, proxy: bool = True) -> tuple[str, str]:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            "--cacert", str(site.registry.ca_file)]
    if proxy:
        argv += ["-x", site.squid.url]
    out = site.node.run([*argv, url], check=False)
    return out.stdout.strip(), out.stderr


def test_connect_from_namespace_allowed_and_denied(site: ProxiedSite) -> None:
    require_binary("curl")
    port = site.registry.port
    code, err = _curl(site, f"https://{UPSTREAM_NAME}:{port}/v2/")
    assert code == "200", err
    # Not on the allow-list: squid answers 403 to the CONNECT.
    code, err = _curl(site, f"https://denied.airgap.test:{port}/v2/")
    assert code != "200" and "403" in err
    # Allowed host, but a port that is not in SSL_ports.
    code, err = _curl(site, f"https://{UPSTREAM_NAME}:{port + 1}/v2/")
    assert code != "200" and "403" in err
    # Without the proxy the client cannot reach the upstream at all.
    code, err = _curl(site, f"https://{site.upstream.address}:{port}/v2/", proxy=False)
    assert code != "200"
    assert "unreachable" in err.lower() or "couldn't connect" in err.lower()
    time.sleep(0.5)
    log = "\n".join(site.squid.access_lines())
    assert "TCP_TUNNEL/200" in log and f"CONNECT {UPSTREAM_NAME}:{port}" in log
    assert "TCP_DENIED/403" in log and "denied.airgap.test" in log


def test_containerd_cri_pull_through_squid(
    site: ProxiedSite, containerd_factory: Callable[..., Containerd]
) -> None:
    reg = site.registry
    digests = make_test_images(reg, ["library/alpha:1"], multi_platform=None)
    # Upstream named by its namespace address (Go never proxies loopback); the daemon
    # gets the proxy in its environment; hosts.toml only supplies the private CA.
    ctrd = containerd_factory(netns=site.node.name,
                              env={"HTTPS_PROXY": site.squid.url, "NO_PROXY": "localhost"})
    host_dir = ctrd.hosts_dir / reg.address
    host_dir.mkdir(parents=True)
    assert reg.ca_file is not None
    shutil.copy(reg.ca_file, host_dir / "ca.crt")
    (host_dir / "hosts.toml").write_text(
        f'server = "{reg.url}"\nca = "ca.crt"\n\n'
        f'[host."{reg.url}"]\n  capabilities = ["pull", "resolve"]\n  ca = "ca.crt"\n'
    )
    with CRIClient(ctrd.socket) as cri:
        cri.pull_image(f"{reg.address}/library/alpha:1")
        image = cri.image_status(f"{reg.address}/library/alpha:1")
    assert image is not None and image.digests == [digests["library/alpha:1"]]
    ctrd.stop()  # squid logs a CONNECT when its tunnel closes
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(f"CONNECT {reg.address}" in line for line in site.squid.access_lines()):
            break
        time.sleep(0.2)
    assert any("TCP_TUNNEL/200" in line and f"CONNECT {reg.address}" in line
               for line in site.squid.access_lines())
