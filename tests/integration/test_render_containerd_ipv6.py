"""A mirror named by an IPv6 address (http://[::1]:PORT), read by Debian 12's containerd 1.6.

go-toml v1 (containerd 1.6 and 1.7) refuses `[host."http://[::1]:PORT"]`; containerd
then drops the whole hosts.toml and pulls from the upstream although `fallback: false`.
airgap.render writes that host as an inline table; these tests give the rendered files
to the real containerd and pull through the CRI, as kubelet does, from a real Debian
docker-registry listening on ::1 only.

Traffic stays on loopback: the mirror is ::1, and every test first pulls through an
upstream named by a closed 127.0.0.1 port (where any fallback would end, refused) and
only then through the reserved name ghcr.airgap.test, so a file containerd could not
read is caught before that name could ever be looked up.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airgap.cri import CRIClient
from airgap.errors import AirgapError
from tests.integration.test_render_containerd import (
    UPSTREAM,
    assert_miss_fails_fast,
    install,
    make_plan,
    pull_and_check,
    render_for,
)
from tests.support import free_port
from tests.support.containerd import Containerd
from tests.support.ocibuild import make_test_images
from tests.support.registry import Registry, TestCA
from tests.support.require import need

pytestmark = pytest.mark.integration

DECODE_ERROR = "failed to decode hosts.toml"


@pytest.fixture
def ipv6_loopback() -> None:
    """::1 on lo, or skip (laptop) / fail (CI=true)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        need(False, f"::1 is not configured on lo ({exc})")


def closed_loopback_upstream() -> str:
    return f"127.0.0.1:{free_port()}"


def containerd_requests(mirror: Registry, path: str, upstream: str) -> list[str]:
    """The mirror's access-log lines for containerd's requests of path for upstream.

    containerd adds ``?ns=UPSTREAM`` to every request it sends to a mirror.
    """
    needle = f" {path}?ns={urllib.parse.quote(upstream, safe='')} HTTP/"
    return [
        line for line in mirror.log_file.read_text(errors="replace").splitlines()
        if line.startswith("::1 ") and needle in line and '"containerd/' in line
    ]


@pytest.mark.parametrize("variant", ["http", "https-ca", "https-nested-path"])
def test_ipv6_mirror_pulls_through_containerd_1_6(
    tmp_path: Path,
    variant: str,
    ipv6_loopback: None,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
    test_ca: TestCA,
) -> None:
    tls = variant.startswith("https")
    mirror = registry_factory(bind="::1", **({"tls": True, "ca": test_ca} if tls else {}))
    assert mirror.url == f"{mirror.scheme}://[::1]:{mirror.port}"
    opts: dict[str, Any] = {"path_prefix": "mirror/v6"} if variant.endswith("nested-path") else {}
    prefix = "mirror/v6/" if opts else ""
    repos = {upstream_name: repo for upstream_name, repo in (
        ("loopback", "canonical/coredns:1.11.1-ck4"), ("test", "canonical/pause:3.10"))}
    digests = make_test_images(mirror, [prefix + r for r in repos.values()], multi_platform=None)
    upstream = closed_loopback_upstream()
    plan = make_plan(mirror, tmp_path, fallback=False, **opts)
    files = render_for(plan, [upstream, UPSTREAM])
    texts = [f.text for f in files if f.path.endswith("hosts.toml")]
    assert len(texts) == 2
    for text in texts:
        assert f'host = {{ "{mirror.url}' in text, text
        assert f'[host."{mirror.url}' not in text, text
    root = tmp_path / "node-root"
    install(files, root)
    ctrd = containerd_factory(hosts_dir=root / "etc/containerd/hosts.d")

    # The closed loopback port first: see the module docstring.
    for name, repo in ((upstream, repos["loopback"]), (UPSTREAM, repos["test"])):
        pull_and_check(ctrd, f"{name}/{repo}", digests[prefix + repo])
        assert DECODE_ERROR not in ctrd.log_file.read_text()
        path, tag = repo.split(":")
        served = containerd_requests(mirror, f"/v2/{prefix}{path}/manifests/{tag}", name)
        assert served, mirror.log_file.read_text()[-2000:]


def test_ipv6_mirror_missing_image_fails_fast_with_not_found(
    tmp_path: Path,
    ipv6_loopback: None,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
    test_ca: TestCA,
) -> None:
    mirror = registry_factory(bind="::1", tls=True, ca=test_ca)
    make_test_images(mirror, ["canonical/present:1"], multi_platform=None)
    upstream = closed_loopback_upstream()
    root = tmp_path / "node-root"
    install(render_for(make_plan(mirror, tmp_path, fallback=False), [upstream, UPSTREAM]), root)
    ctrd = containerd_factory(hosts_dir=root / "etc/containerd/hosts.d")
    with CRIClient(ctrd.socket) as cri:
        for name in (upstream, UPSTREAM):  # the closed loopback port first: see the docstring
            assert cri.pull_image(f"{name}/canonical/present:1").startswith("sha256:")
            assert DECODE_ERROR not in ctrd.log_file.read_text()
            assert_miss_fails_fast(cri, f"{name}/canonical/missing:1")
    # Each miss was answered by the mirror on ::1, twice: containerd 1.6 tries the
    # inline [host] entry, then server (the same mirror); nothing else was asked.
    for name in (upstream, UPSTREAM):
        asked = containerd_requests(mirror, "/v2/canonical/missing/manifests/1", name)
        assert len(asked) == 2, asked


def test_ipv6_table_header_is_dropped_by_containerd_1_6_and_ours_is_not(
    tmp_path: Path,
    ipv6_loopback: None,
    registry_factory: Callable[..., Registry],
    containerd_factory: Callable[..., Containerd],
) -> None:
    """Why: the form tomli_w writes makes containerd ignore the file and go upstream."""
    mirror = registry_factory(bind="::1")
    repo = "canonical/pause:3.10"
    digests = make_test_images(mirror, [repo], multi_platform=None)
    upstream = closed_loopback_upstream()  # only a closed loopback port: the old form falls back
    root = tmp_path / "node-root"
    host_dir = root / "etc/containerd/hosts.d" / upstream
    host_dir.mkdir(parents=True)
    (host_dir / "hosts.toml").write_text(
        f'server = "{mirror.url}"\ncapabilities = ["pull", "resolve"]\n\n'
        f'[host."{mirror.url}"]\ncapabilities = ["pull", "resolve"]\n'
    )
    ctrd = containerd_factory(hosts_dir=root / "etc/containerd/hosts.d")
    with CRIClient(ctrd.socket) as cri, pytest.raises(AirgapError) as err:
        cri.pull_image(f"{upstream}/{repo}")
    assert "connection refused" in str(err.value), str(err.value)
    assert DECODE_ERROR in ctrd.log_file.read_text()
    assert containerd_requests(mirror, "/v2/canonical/pause/manifests/3.10", upstream) == []

    (host_dir / "hosts.toml").unlink()
    install(render_for(make_plan(mirror, tmp_path, fallback=False), [upstream]), root)
    log_before = ctrd.log_file.read_text().count(DECODE_ERROR)
    pull_and_check(ctrd, f"{upstream}/{repo}", digests[repo])
    assert ctrd.log_file.read_text().count(DECODE_ERROR) == log_before
