"""containerd hosts.toml: every mirror variant, parsed back as TOML, and the seed's errors."""

from __future__ import annotations

from typing import Any

import pytest
import tomllib

from airgap.errors import PlanError
from airgap.plan import CLASSIC_HOSTS_DIR, parse_plan
from airgap.render.hosts import check_hosts_toml, render_hosts_files

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def plan_with(mirror: dict[str, Any], **extra: Any) -> Any:
    data: dict[str, Any] = {
        "access": ["mirror"],
        "nodes": [{"name": "node-1", "address": "10.0.0.1"}],
        "mirror": mirror,
    }
    data.update(extra)
    return parse_plan(data)


def files_by_path(files: list[Any]) -> dict[str, Any]:
    return {f.path: f for f in files}


def test_http_mirror_one_file_per_registry() -> None:
    plan = plan_with({"url": "http://10.10.10.10:5050"})
    files = render_hosts_files(plan, ["ghcr.io", "docker.io", "ghcr.io"], None)
    assert [f.path for f in files] == [
        "/etc/containerd/hosts.d/docker.io/hosts.toml",
        "/etc/containerd/hosts.d/ghcr.io/hosts.toml",
    ]
    doc = tomllib.loads(files[1].text)
    assert doc["server"] == "http://10.10.10.10:5050"
    assert doc["host"] == {"http://10.10.10.10:5050": {"capabilities": ["pull", "resolve"]}}
    assert "ca" not in doc
    assert all(f.mode == 0o644 for f in files)


def test_https_mirror_with_ca_uses_relative_path_and_ships_the_ca() -> None:
    plan = plan_with({"url": "https://mirror.internal:5443"})
    files = files_by_path(render_hosts_files(plan, ["ghcr.io"], CA))
    assert set(files) == {
        "/etc/containerd/hosts.d/ghcr.io/hosts.toml",
        "/etc/containerd/hosts.d/ghcr.io/ca.crt",
    }
    assert files["/etc/containerd/hosts.d/ghcr.io/ca.crt"].content == CA
    doc = tomllib.loads(files["/etc/containerd/hosts.d/ghcr.io/hosts.toml"].text)
    assert doc["host"]["https://mirror.internal:5443"]["ca"] == "ca.crt"
    # server points at the mirror (no fallback), so the top level needs the CA too.
    assert doc["server"] == "https://mirror.internal:5443"
    assert doc["ca"] == "ca.crt"


def test_https_mirror_without_ca_writes_no_ca() -> None:
    plan = plan_with({"url": "https://mirror.example.com"})
    files = render_hosts_files(plan, ["ghcr.io"], None)
    assert len(files) == 1
    assert "ca" not in tomllib.loads(files[0].text)


def test_nested_path_sets_override_path_and_full_api_path() -> None:
    plan = plan_with({"url": "https://10.10.10.10:5050", "path_prefix": "my/own/{registry}"})
    files = files_by_path(render_hosts_files(plan, ["ghcr.io"], CA))
    doc = tomllib.loads(files["/etc/containerd/hosts.d/ghcr.io/hosts.toml"].text)
    url = "https://10.10.10.10:5050/v2/my/own/ghcr.io"
    assert doc["host"] == {
        url: {"capabilities": ["pull", "resolve"], "ca": "ca.crt", "override_path": True}
    }
    assert doc["server"] == url
    assert doc["override_path"] is True


def test_fixed_nested_prefix_is_the_same_for_every_registry() -> None:
    plan = plan_with({"url": "http://m:5000", "path_prefix": "/mirror/"})
    docs = [tomllib.loads(f.text) for f in render_hosts_files(plan, ["a.io", "b.io"], None)]
    assert [list(d["host"]) for d in docs] == [["http://m:5000/v2/mirror"]] * 2


def test_fallback_true_keeps_the_upstream_server() -> None:
    plan = plan_with({"url": "https://m.internal:5000", "fallback": True})
    files = files_by_path(render_hosts_files(plan, ["docker.io", "ghcr.io", "quay.io:8443"], CA))
    hosts_dir = CLASSIC_HOSTS_DIR
    docker = tomllib.loads(files[f"{hosts_dir}/docker.io/hosts.toml"].text)
    assert docker["server"] == "https://registry-1.docker.io"
    assert "ca" not in docker and "override_path" not in docker
    ghcr = tomllib.loads(files[f"{hosts_dir}/ghcr.io/hosts.toml"].text)
    assert ghcr["server"] == "https://ghcr.io"
    quay = tomllib.loads(files[f"{hosts_dir}/quay.io:8443/hosts.toml"].text)
    assert quay["server"] == "https://quay.io:8443"


def test_fallback_false_points_server_at_the_mirror() -> None:
    plan = plan_with({"url": "http://10.10.10.10:5050", "fallback": False})
    doc = tomllib.loads(render_hosts_files(plan, ["ghcr.io"], None)[0].text)
    assert doc["server"] == "http://10.10.10.10:5050"
    assert doc["capabilities"] == ["pull", "resolve"]


def test_registry_with_port_uses_host_colon_port_directory() -> None:
    plan = plan_with({"url": "http://10.10.10.10:5050"})
    files = render_hosts_files(plan, ["registry.corp:5000"], None)
    assert files[0].path == "/etc/containerd/hosts.d/registry.corp:5000/hosts.toml"


def test_containerd_base_dir_moves_the_hosts_dir() -> None:
    plan = plan_with({"url": "https://10.10.10.10:5050"}, k8s={"containerd_base_dir": "/opt/k8s/"})
    paths = [f.path for f in render_hosts_files(plan, ["ghcr.io"], CA)]
    assert paths == [
        "/opt/k8s/etc/containerd/hosts.d/ghcr.io/ca.crt",
        "/opt/k8s/etc/containerd/hosts.d/ghcr.io/hosts.toml",
    ]


def test_the_mirror_itself_gets_no_hosts_file() -> None:
    plan = plan_with({"url": "http://10.10.10.10:5050"})
    files = render_hosts_files(plan, ["10.10.10.10:5050", "ghcr.io"], None)
    assert [f.path for f in files] == ["/etc/containerd/hosts.d/ghcr.io/hosts.toml"]


def test_no_mirror_mode_renders_nothing() -> None:
    plan = parse_plan(
        {
            "access": ["sideload"],
            "nodes": [{"name": "n", "address": "10.0.0.1"}],
            "mirror": {"url": "http://10.10.10.10:5050"},
        }
    )
    assert render_hosts_files(plan, ["ghcr.io"], None) == []


def test_registry_placeholder_with_a_port_is_rejected_naming_the_plan() -> None:
    plan = plan_with({"url": "http://m:5000", "path_prefix": "x/{registry}"})
    with pytest.raises(PlanError, match=r"path_prefix.*localhost:5000"):
        render_hosts_files(plan, ["localhost:5000"], None)


def test_every_rendered_variant_passes_the_checker() -> None:
    for mirror in (
        {"url": "http://10.10.10.10:5050"},
        {"url": "https://10.10.10.10:5050"},
        {"url": "https://10.10.10.10:5050", "path_prefix": "a/{registry}"},
        {"url": "https://10.10.10.10:5050", "fallback": True},
    ):
        for base in (None, "/var/snap/k8s/common"):
            plan = plan_with(mirror, k8s={"containerd_base_dir": base})
            files = files_by_path(render_hosts_files(plan, ["ghcr.io", "docker.io"], CA))
            for path, f in files.items():
                if path.endswith("hosts.toml"):
                    problems = check_hosts_toml(
                        f.text, directory=path.rsplit("/", 1)[0], exists=files.__contains__
                    )
                    assert problems == [], (mirror, path, problems)


# --- The seed procedure's errors: each check fails on the seed's file and passes on ours.

SEED_NESTED = """\
# /etc/containerd/hosts.d/ghcr.io/hosts.toml
server = https://10.10.10.10:5050/v2/my/own/ghcr.io
[host."https://10.10.10.10:5050/v2/my/own/ghcr.io"]
capabilities = ["pull", "resolve"]
ca = "/var/snap/k8s/common/etc/containerd/hosts.d/ghcr.io/ca.crt"
override_path = true
"""

SEED_HTTPS = """\
[host."https://10.10.10.10:5050"]
capabilities = ["pull", "resolve"]
ca = "/var/snap/k8s/common/etc/containerd/hosts.d/ghcr.io/ca.crt"
"""

# Where the seed tells the user to copy the CA (classic snap).
SEED_FILES = {"/etc/containerd/hosts.d/ghcr.io/ca.crt"}
GHCR_DIR = "/etc/containerd/hosts.d/ghcr.io"


def test_seed_nested_path_unquoted_server_is_not_toml() -> None:
    problems = check_hosts_toml(SEED_NESTED, directory=GHCR_DIR, exists=SEED_FILES.__contains__)
    assert len(problems) == 1 and problems[0].startswith("not valid TOML")
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(SEED_NESTED)


def test_ours_nested_path_is_valid_toml_with_quoted_server() -> None:
    plan = plan_with({"url": "https://10.10.10.10:5050", "path_prefix": "my/own/{registry}"})
    files = files_by_path(render_hosts_files(plan, ["ghcr.io"], CA))
    text = files[f"{GHCR_DIR}/hosts.toml"].text
    assert 'server = "https://10.10.10.10:5050/v2/my/own/ghcr.io"' in text
    assert check_hosts_toml(text, directory=GHCR_DIR, exists=files.__contains__) == []


def test_seed_ca_path_does_not_exist_for_the_classic_snap() -> None:
    problems = check_hosts_toml(SEED_HTTPS, directory=GHCR_DIR, exists=SEED_FILES.__contains__)
    assert problems == [
        'host."https://10.10.10.10:5050".ca: '
        "'/var/snap/k8s/common/etc/containerd/hosts.d/ghcr.io/ca.crt' resolves to "
        "/var/snap/k8s/common/etc/containerd/hosts.d/ghcr.io/ca.crt, which does not exist"
    ]


def test_ours_ca_path_exists_for_the_classic_snap() -> None:
    plan = plan_with({"url": "https://10.10.10.10:5050"})
    files = files_by_path(render_hosts_files(plan, ["ghcr.io"], CA))
    assert f"{GHCR_DIR}/ca.crt" in files
    text = files[f"{GHCR_DIR}/hosts.toml"].text
    assert check_hosts_toml(text, directory=GHCR_DIR, exists=files.__contains__) == []


def test_checker_flags_bad_keys_and_types() -> None:
    text = 'srever = "x"\n[host."ftp://m"]\ncapabilities = ["pull", "fly"]\noverride_path = "yes"\n'
    problems = check_hosts_toml(text, directory=GHCR_DIR, exists=lambda p: True)
    assert "unknown key 'srever'" in problems
    assert any("ftp://m" in p and "not a registry URL" in p for p in problems)
    assert any("capabilities" in p for p in problems)
    assert any("override_path" in p for p in problems)


def test_two_registries_on_one_mirror_path_are_refused() -> None:
    """docker.io/foo/bar:1 and quay.io/foo/bar:1 would overwrite each other in the mirror."""
    from airgap.errors import PlanError
    from airgap.plan import check_mirror_paths, parse_plan
    from airgap.plan.images import parse_image_ref

    def plan(prefix: str):  # type: ignore[no-untyped-def]
        return parse_plan({"access": ["mirror"],
                           "nodes": [{"name": "n1", "address": "10.0.0.1"}],
                           "mirror": {"url": "http://10.0.0.5:5000", "path_prefix": prefix}},
                          source="airgap.yaml")

    images = [parse_image_ref("docker.io/foo/bar:1"), parse_image_ref("quay.io/foo/bar:1")]
    with pytest.raises(PlanError) as err:
        check_mirror_paths(plan(""), images)
    assert "docker.io/foo/bar:1 and quay.io/foo/bar:1" in str(err.value)
    assert "{registry}" in str(err.value)
    check_mirror_paths(plan("{registry}"), images)
    check_mirror_paths(plan(""), images[:1])
