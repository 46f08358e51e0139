"""preflight's "mirror images": every manifest of images.lock asked from the node by
digest, in one curl run whose config (and login) travels on stdin.

The curl outputs below were captured from real curl 7.88.1 run with
render_mirror_config's config (``curl -K -``) against a loopback TLS server answering
200, 404 and 401 (Basic) to HEAD, and against a closed port and without the CA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airgap.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from airgap.nodes import RunResult
from airgap.plan import Plan, parse_plan
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import ImageLock, LockedImage, dumps_lock
from airgap.preflight import CheckStatus, preflight
from airgap.preflight.access import (
    MIRROR_IMAGES_CA_TMP,
    check_mirror_images,
    manifest_asks,
    node_tmp,
    parse_mirror_lines,
    render_mirror_config,
)
from tests.support.fakes import FakeNode

A, B, C, D = ("sha256:" + x * 64 for x in "abcd")
CAPTURED = (
    "200 https://127.0.0.1:40499/v2/mirror/library/app/manifests/" + A + "\n"
    "404 https://127.0.0.1:40499/v2/mirror/library/app/manifests/" + D + "\n"
    "401 https://127.0.0.1:40499/v2/mirror/private/app/manifests/" + A + "\n"
)
CAPTURED_DOWN = ("000 https://127.0.0.1:1/v2/mirror/library/app/manifests/" + A + "\n",
                 "curl: (7) Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't "
                 "connect to server\n")
CAPTURED_NO_CA = ("000 https://127.0.0.1:40499/v2/mirror/library/app/manifests/" + A + "\n",
                  "curl: (60) SSL certificate problem: unable to get local issuer "
                  "certificate\nMore details here: https://curl.se/docs/sslcerts.html\n")
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PASSWORD = 's3cr"et\\pw'


def make_plan(platforms: tuple[str, ...] = ("linux/amd64",), **mirror: object) -> Plan:
    return parse_plan({
        "access": ["mirror"],
        "platforms": list(platforms),
        "mirror": {"url": "https://reg.lab.internal:5000", "path_prefix": "{registry}",
                   **mirror},
        "nodes": [{"name": "node-1", "address": "10.30.0.11", "role": "control-plane",
                   "transport": "local"}],
    }, source="airgap.yaml")


def index(ref: str, top: str, amd: str, arm: str) -> LockedImage:
    return LockedImage(parse_image_ref(ref), top, OCI_INDEX,
                       {"linux/amd64": amd, "linux/arm64/v8": arm})


LOCK = ImageLock(["linux/amd64", "linux/arm64"], [
    index("ghcr.io/canonical/k8s-snap/pause:3.10", A, B, C),
    LockedImage(parse_image_ref("docker.io/library/nginx:1.27"), D, DOCKER_MANIFEST),
])


def curl_answers(codes: dict[str, str]):  # type: ignore[no-untyped-def]
    """Answer `curl -K -` as curl does: one "<code> <url>" line per url of the config."""
    def answer(argv: list[str], data: bytes | None) -> RunResult:
        assert data is not None
        urls = [ln.split('"')[1] for ln in data.decode().splitlines() if ln.startswith("url =")]
        out = "".join(f"{codes.get(u.split('/manifests/')[1], '200')} {u}\n" for u in urls)
        return RunResult(argv, 0, out, "")
    return answer


def test_every_locked_manifest_and_each_needed_platform_is_asked_for() -> None:
    asks = manifest_asks(make_plan(("linux/amd64", "linux/arm64")), LOCK)
    assert [a.path for a in asks] == [
        f"/v2/ghcr.io/canonical/k8s-snap/pause/manifests/{A}",
        f"/v2/ghcr.io/canonical/k8s-snap/pause/manifests/{B}",
        f"/v2/ghcr.io/canonical/k8s-snap/pause/manifests/{C}",  # arm64 is arm64/v8
        f"/v2/docker.io/library/nginx/manifests/{D}",
    ]
    only_amd = manifest_asks(make_plan(), LOCK)
    assert [a.digest for a in only_amd] == [A, B, D]


def test_config_has_head_accept_ca_login_and_one_url_per_ask() -> None:
    asks = manifest_asks(make_plan(), LOCK)
    config = render_mirror_config("https://reg:5000", asks, cacert="/tmp/ca.crt",
                                  credentials=("puller", PASSWORD)).decode()
    lines = config.splitlines()
    assert "head" in lines and 'noproxy = "*"' in lines
    accept = next(ln for ln in lines if ln.startswith("header ="))
    assert all(t in accept for t in (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
    assert 'cacert = "/tmp/ca.crt"' in lines
    assert 'user = "puller:s3cr\\"et\\\\pw"' in lines  # curl's quoted-string escapes
    assert [ln for ln in lines if ln.startswith("url =")] == [
        f'url = "https://reg:5000{a.path}"' for a in asks]
    assert lines.count('output = "/dev/null"') == len(asks)


def test_captured_curl_lines_parse_by_path() -> None:
    codes = parse_mirror_lines(CAPTURED + "curl: warning on stdout\n\n")
    assert codes == {f"/v2/mirror/library/app/manifests/{A}": "200",
                     f"/v2/mirror/library/app/manifests/{D}": "404",
                     f"/v2/mirror/private/app/manifests/{A}": "401"}


def node_with(answer: object) -> FakeNode:
    node = FakeNode("node-1")
    node.on("curl", answer=answer)  # type: ignore[arg-type]
    return node


def test_all_present_is_ok_with_the_count_and_the_ca_is_removed() -> None:
    node = node_with(curl_answers({}))
    [check] = check_mirror_images(node, make_plan(), LOCK, CA)
    assert check.status is CheckStatus.ok
    assert "all 2 images" in check.detail and "3 manifests" in check.detail
    assert node.issued("curl") == [["curl", "-K", "-"]]  # one exec for every image
    tmp = node_tmp(MIRROR_IMAGES_CA_TMP, node)
    assert node.written == [tmp] and node.name in tmp
    assert node.issued("rm") == [["rm", "-f", tmp]]
    config = (node.inputs[node.commands.index(["curl", "-K", "-"])] or b"").decode()
    assert f'cacert = "{tmp}"' in config and "user =" not in config


def test_missing_images_are_named_with_digest_and_the_rest_counted(tmp_path: Path) -> None:
    images = [LockedImage(parse_image_ref(f"docker.io/library/app{n}:1"), f"sha256:{n:064x}")
              for n in range(8)]
    lock = ImageLock(["linux/amd64"], images)
    node = node_with(curl_answers({f"sha256:{n:064x}": "404" for n in range(1, 8)}))
    [check] = check_mirror_images(node, make_plan(), lock, CA)
    assert check.status is CheckStatus.fail
    assert check.detail.startswith("7 of 8 images of images.lock not in the mirror: ")
    assert f"docker.io/library/app1:1@sha256:{1:064x}" in check.detail
    assert "app0" not in check.detail and check.detail.endswith(" and 2 more")
    assert "--bundle BUNDLE" in check.fix and "no image store" in check.fix
    (tmp_path / "oci").mkdir()
    (tmp_path / "oci" / "index.json").write_text("{}")
    [with_store] = check_mirror_images(node, make_plan(), lock, CA, tmp_path)
    assert f"--from-bundle {tmp_path}" in with_store.fix


def test_a_missing_platform_manifest_is_named_with_its_platform() -> None:
    node = node_with(curl_answers({B: "404"}))
    [check] = check_mirror_images(node, make_plan(), LOCK, CA)
    assert check.status is CheckStatus.fail
    assert f"ghcr.io/canonical/k8s-snap/pause:3.10@{B} (linux/amd64)" in check.detail


def test_401_without_credentials_names_the_plan_settings() -> None:
    node = node_with(curl_answers({A: "401", B: "401", D: "401"}))
    [check] = check_mirror_images(node, make_plan(), LOCK, CA)
    assert check.status is CheckStatus.fail
    assert "asks for a login (HTTP 401)" in check.detail
    assert "mirror.username_env and mirror.password_env" in check.fix


def test_credentials_go_on_stdin_only_and_a_refusal_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRROR_USER", "puller")
    monkeypatch.setenv("MIRROR_PASS", PASSWORD)
    plan = make_plan(username_env="MIRROR_USER", password_env="MIRROR_PASS")
    node = node_with(curl_answers({A: "401"}))
    [check] = check_mirror_images(node, plan, LOCK, CA)
    assert check.status is CheckStatus.fail
    assert "$MIRROR_USER" in check.detail and "$MIRROR_PASS" in check.fix
    assert all("s3cr" not in " ".join(c) for c in node.commands)
    assert all("s3cr" not in text for text in (check.detail, check.fix))
    stdin = b"".join(i for i in node.inputs if i)
    assert b'user = "puller:s3cr\\"et\\\\pw"' in stdin


def test_an_unset_credential_variable_is_a_failed_check_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIRROR_USER", raising=False)
    monkeypatch.delenv("MIRROR_PASS", raising=False)
    plan = make_plan(username_env="MIRROR_USER", password_env="MIRROR_PASS")
    node = node_with(curl_answers({}))
    [check] = check_mirror_images(node, plan, LOCK, CA)
    assert check.status is CheckStatus.fail and "MIRROR_USER" in check.detail
    assert not node.issued("curl")


@pytest.mark.parametrize(("captured", "detail", "fix"), [
    (CAPTURED_DOWN, "did not answer 3 of 3 manifest requests: curl: (7) Failed to connect",
     "reachable"),
    (CAPTURED_NO_CA, "TLS to https://reg.lab.internal:5000 fails: curl: (60)", "mirror.ca_file"),
])
def test_an_unreachable_mirror_and_a_tls_failure_are_told_apart(
        captured: tuple[str, str], detail: str, fix: str) -> None:
    node = node_with(RunResult([], 7, captured[0], captured[1]))
    [check] = check_mirror_images(node, make_plan(), LOCK, CA)
    assert check.status is CheckStatus.fail
    assert detail in check.detail and fix in check.fix


def test_without_a_lock_the_check_skips_with_the_reason() -> None:
    node = node_with(curl_answers({}))
    [check] = check_mirror_images(node, make_plan(), None, CA)
    assert check.status is CheckStatus.skip and "--bundle" in check.detail
    assert not node.issued("curl")


def test_preflight_with_a_bundle_asks_the_mirror_for_its_lock(tmp_path: Path) -> None:
    (tmp_path / "images.lock").write_text(dumps_lock(LOCK))
    plan = make_plan()
    node = node_with(RunResult([], 0, "200 000", ""))  # the mirror's /v2/
    node.on("curl", "-K", "-", answer=curl_answers({D: "404"}))
    report = preflight(plan, {"node-1": node}, bundle=tmp_path, clock=lambda: 0.0)
    check = report.node("node-1").get("mirror images")
    assert check.status is CheckStatus.fail
    assert f"docker.io/library/nginx:1.27@{D}" in check.detail
    config = next(i for c, i in zip(node.commands, node.inputs, strict=True)
                  if c == ["curl", "-K", "-"])
    assert config is not None and f"/v2/docker.io/library/nginx/manifests/{D}" in config.decode()
    assert json.loads((tmp_path / "images.lock").read_text())["images"]  # lock untouched
