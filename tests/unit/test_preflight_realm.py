"""preflight through the proxy beyond /v2/: the token realm a registry's 401 names and
the host its blobs redirect to, each through the proxy, in one script run per node.

CAPTURED_* are what real curl 7.88.1 printed, through a real squid (Debian's, allow-list
by dstdomain) to loopback TLS servers: a registry (registry.test) whose /v2/ answers
401 with a Bearer realm on auth.test, a token service, and blobs that redirect (307)
to cdn.test; squid allowing only the registry, then also the realm, then all three.
The registry label and port are the capture's."""

from __future__ import annotations

from airgap.mediatypes import DOCKER_MANIFEST, OCI_INDEX
from airgap.nodes import RunResult
from airgap.plan import Plan, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage
from airgap.preflight import Check, CheckStatus
from airgap.preflight.access import check_proxy
from airgap.preflight.registry_checks import (
    PULL_HOSTS_SCRIPT,
    Challenge,
    bearer_challenge,
    parse_challenges,
    parse_pull_hosts,
    response_headers,
    token_url,
    url_host,
)
from tests.support.fakes import FakeNode

REG = "registry.test:40499"
CAPTURED_V2 = (
    "HTTP/1.1 200 Connection established\n\nHTTP/1.1 401 Unauthorized\n"
    "Server: BaseHTTP/0.6 Python/3.11.7\nDate: Fri, 04 Dec 2026 19:13:09 GMT\n"
    "Content-Type: application/json\n"
    'Www-Authenticate: Bearer realm="https://auth.test:40499/token",service="registry.test"\n'
    "Content-Length: 13\n\n\n401 200")
LOCATION = ("https://cdn.test:40499/registry-v2/docker/registry/v2/blobs/sha256/cc/"
            + "c" * 64 + "/data?verify=1761-secret&sig=xyz")
CAPTURED_ONLY_REGISTRY = (
    f"token {REG} 56 000 403 \n! token {REG} curl: (56) CONNECT tunnel failed, response 403\n"
    f"manifest {REG} 0 401 200 \n")
CAPTURED_NO_CDN = (
    f"token {REG} 0 200 200 \nmanifest {REG} 0 200 200 \nblob {REG} 0 307 200 {LOCATION}\n"
    f"redirect {REG} 56 000 403 \n! redirect {REG} curl: (56) CONNECT tunnel failed, "
    "response 403\n")
CAPTURED_ALL = (
    f"token {REG} 0 200 200 \nmanifest {REG} 0 200 200 \nblob {REG} 0 307 200 {LOCATION}\n"
    f"redirect {REG} 0 206 200 \n")
DOCKER_HUB = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
GHCR = 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull"'
AMD, ARM = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_docker_hub_and_ghcr_challenges() -> None:
    [hub] = parse_challenges(DOCKER_HUB)
    assert hub == Challenge("Bearer", {"realm": "https://auth.docker.io/token",
                                       "service": "registry.docker.io"})
    ghcr = bearer_challenge(GHCR)
    assert ghcr is not None and ghcr.params == {
        "realm": "https://ghcr.io/token", "service": "ghcr.io",
        "scope": "repository:user/image:pull"}


def test_basic_none_and_several_challenges() -> None:
    assert parse_challenges('Basic realm="Registry Realm"') == [
        Challenge("Basic", {"realm": "Registry Realm"})]
    assert bearer_challenge('Basic realm="Registry Realm"') is None
    assert parse_challenges("") == [] and bearer_challenge("") is None
    several = parse_challenges(
        'Negotiate YWJj==, Basic realm="a, b", Bearer realm="https://t.example/token?x=1",'
        'error="invalid_token",error_description="say \\"hi\\", then go"')
    assert [c.scheme for c in several] == ["Negotiate", "Basic", "Bearer"]
    assert several[0].token68 == "YWJj=="
    assert several[1].params == {"realm": "a, b"}
    assert several[2].params["realm"] == "https://t.example/token?x=1"
    assert several[2].params["error_description"] == 'say "hi", then go'


def test_token_url_adds_service_and_our_scope() -> None:
    hub = bearer_challenge(DOCKER_HUB)
    assert hub is not None
    assert token_url(hub, "repository:library/nginx:pull") == (
        "https://auth.docker.io/token?service=registry.docker.io"
        "&scope=repository%3Alibrary%2Fnginx%3Apull")
    assert token_url(Challenge("Bearer", {"realm": "https://t/x?a=1"}), "s") == \
        "https://t/x?a=1&scope=s"


def test_headers_of_the_registry_not_of_the_proxy_connect() -> None:
    headers = response_headers(CAPTURED_V2.rsplit("\n", 1)[0])
    assert headers["www-authenticate"] == [
        'Bearer realm="https://auth.test:40499/token",service="registry.test"']
    assert "connection established" not in str(headers).lower()
    assert response_headers("") == {}


def test_location_host() -> None:
    assert url_host(LOCATION) == "cdn.test:40499"
    assert url_host("https://production.cloudflare.docker.com/registry-v2/x?sig=1") == \
        "production.cloudflare.docker.com"
    assert url_host("https://[2001:db8::1]:8443/b") == "[2001:db8::1]:8443"
    assert url_host("/v2/relative") == "" and url_host("") == ""


def test_captured_script_lines_parse() -> None:
    steps = parse_pull_hosts(CAPTURED_NO_CDN + "garbage line\n")
    assert steps[(REG, "blob")].http == "307" and steps[(REG, "blob")].redirect == LOCATION
    redirect = steps[(REG, "redirect")]
    assert (redirect.rc, redirect.http, redirect.connect) == (56, "000", "403")
    assert redirect.error == "curl: (56) CONNECT tunnel failed, response 403"
    assert set(parse_pull_hosts(CAPTURED_ONLY_REGISTRY)) == {(REG, "token"), (REG, "manifest")}


# -- the check's decisions on canned node outputs (the captured lines, for docker.io) ----

def hub_lines(captured: str) -> str:
    return (captured.replace(REG, "docker.io").replace("auth.test:40499", "auth.docker.io")
            .replace("cdn.test:40499", "production.cloudflare.docker.com"))


def make_plan() -> Plan:
    return parse_plan({
        "access": ["proxy"], "proxy": {"https": "http://10.30.0.2:3128"},
        "nodes": [{"name": "node-1", "address": "10.30.0.11", "role": "control-plane",
                   "transport": "local"}],
    }, source="airgap.yaml")


NGINX = parse_image_ref("docker.io/library/nginx:1.27")
LOCK = ImageLock(["linux/amd64"], [
    LockedImage(NGINX, "sha256:" + "f" * 64, OCI_INDEX, {"linux/amd64": AMD, "linux/arm64": ARM}),
    LockedImage(parse_image_ref("docker.io/library/zz:1"), "sha256:" + "e" * 64,
                DOCKER_MANIFEST)])


def proxied_node(v2: str, script_out: str | None) -> FakeNode:
    node = FakeNode("node-1")
    node.on("curl", answer=RunResult([], 0, v2, ""))
    if script_out is not None:
        node.on("sh", "-c", PULL_HOSTS_SCRIPT, answer=RunResult([], 0, script_out, ""))
    return node


def hub_v2() -> str:
    return CAPTURED_V2.replace(
        'realm="https://auth.test:40499/token",service="registry.test"',
        'realm="https://auth.docker.io/token",service="registry.docker.io"')


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_realm_the_proxy_refuses_fails_naming_the_host_and_squid_fix() -> None:
    node = proxied_node(hub_v2(), hub_lines(CAPTURED_ONLY_REGISTRY))
    checks = by_name(check_proxy(node, make_plan(), [NGINX], LOCK))
    assert checks["proxy -> docker.io"].status is CheckStatus.ok
    realm = checks["proxy -> auth.docker.io (token for docker.io)"]
    assert realm.status is CheckStatus.fail
    assert "refused CONNECT to auth.docker.io (403)" in realm.detail
    assert "auth.docker.io:443" in realm.fix and "squid" in realm.fix


def test_a_blob_host_the_proxy_refuses_fails_naming_it_and_no_signed_url_leaks() -> None:
    node = proxied_node(hub_v2(), hub_lines(CAPTURED_NO_CDN))
    checks = check_proxy(node, make_plan(), [NGINX], LOCK)
    named = by_name(checks)
    assert named["proxy -> auth.docker.io (token for docker.io)"].status is \
        CheckStatus.ok
    cdn = named["proxy -> production.cloudflare.docker.com (blobs of docker.io)"]
    assert cdn.status is CheckStatus.fail
    assert "production.cloudflare.docker.com:443" in cdn.fix
    assert all("sig=" not in c.detail + c.fix for c in checks)


def test_all_hosts_allowed_passes_and_the_script_asks_the_locked_platform_manifest() -> None:
    node = proxied_node(hub_v2(), hub_lines(CAPTURED_ALL))
    checks = check_proxy(node, make_plan(), [NGINX], LOCK)
    assert all(c.status is CheckStatus.ok for c in checks), checks
    assert [c.name for c in checks] == [
        "proxy -> docker.io", "proxy -> auth.docker.io (token for docker.io)",
        "proxy -> production.cloudflare.docker.com (blobs of docker.io)"]
    [script] = node.issued("sh", "-c", PULL_HOSTS_SCRIPT)
    assert script[4] == "http://10.30.0.2:3128"
    assert script[7:] == [
        "docker.io",
        "https://auth.docker.io/token?service=registry.docker.io"
        "&scope=repository%3Alibrary%2Fnginx%3Apull",
        "https://registry-1.docker.io/v2/library/nginx", AMD]  # the plan's linux/amd64
    [v2] = node.issued("curl")
    assert v2[-1] == "https://registry-1.docker.io/v2/" and "-D" in v2
    assert v2[v2.index("--proxy") + 1] == "http://10.30.0.2:3128"


def test_without_a_lock_the_realm_is_checked_and_the_blob_host_skipped() -> None:
    node = proxied_node(hub_v2(), hub_lines(CAPTURED_ALL.split("manifest")[0]))
    named = by_name(check_proxy(node, make_plan(), [NGINX]))
    assert named["proxy -> auth.docker.io (token for docker.io)"].status is \
        CheckStatus.ok
    skipped = named["proxy -> blob host (docker.io)"]
    assert skipped.status is CheckStatus.skip
    assert "--bundle" in skipped.detail
    [script] = node.issued("sh", "-c", PULL_HOSTS_SCRIPT)
    assert script[-1] == "-"  # no manifest to ask for


def test_an_anonymous_token_refused_is_a_warning_not_a_proxy_failure() -> None:
    lines = hub_lines(CAPTURED_ALL).replace("token docker.io 0 200 200",
                                            "token docker.io 0 401 200")
    node = proxied_node(hub_v2(), lines)
    realm = by_name(check_proxy(node, make_plan(), [NGINX], LOCK))[
        "proxy -> auth.docker.io (token for docker.io)"]
    assert realm.status is CheckStatus.warn
    assert "answered 401" in realm.detail


def test_no_challenge_and_no_lock_runs_no_script() -> None:
    node = proxied_node("401 200", None)  # a registry whose 401 names no realm
    checks = check_proxy(node, make_plan(), [NGINX])
    assert not node.issued("sh", "-c", PULL_HOSTS_SCRIPT)
    assert [c.status for c in checks] == [CheckStatus.ok, CheckStatus.skip]


def test_a_registry_that_serves_blobs_itself_is_ok() -> None:
    lines = hub_lines(CAPTURED_ALL).split("blob")[0] + "blob docker.io 0 200 200 \n"
    node = proxied_node(hub_v2(), lines)
    blob = by_name(check_proxy(node, make_plan(), [NGINX], LOCK))["proxy -> blob host (docker.io)"]
    assert blob.status is CheckStatus.ok
    assert "serves blobs itself" in blob.detail


def test_a_manifest_redirect_is_named_as_a_warning() -> None:
    lines = (hub_lines(CAPTURED_ALL).split("manifest")[0]
             + "manifest docker.io 0 307 200 https://us-west1-docker.pkg.dev/v2/x/manifests/y\n")
    node = proxied_node(hub_v2(), lines)
    blob = by_name(check_proxy(node, make_plan(), [NGINX], LOCK))["proxy -> blob host (docker.io)"]
    assert blob.status is CheckStatus.warn
    assert "us-west1-docker.pkg.dev:443" in blob.fix
