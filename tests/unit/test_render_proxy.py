"""The proxy drop-in for snap.k8s.containerd: variables, NO_PROXY contents, quoting."""

from __future__ import annotations

from typing import Any

import pytest

from airgap.plan import PROXY_DROPIN, parse_plan
from airgap.render.proxy import no_proxy_entries, render_proxy_dropin
from airgap.render.systemd import systemd_quote


def plan_with(**extra: Any) -> Any:
    data: dict[str, Any] = {
        "access": ["proxy"],
        "nodes": [
            {"name": "cp", "address": "10.20.0.11"},
            {"name": "w1", "address": "10.20.0.12", "role": "worker"},
        ],
        "proxy": {"http": "http://squid.internal:3128", "https": "http://squid.internal:3128"},
    }
    data.update(extra)
    return parse_plan(data)


def environment(text: str) -> dict[str, str]:
    """Parse Environment= lines the way systemd does for our quoting (one word each)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("Environment="):
            word = line[len("Environment=") :]
            assert word.startswith('"') and word.endswith('"')
            value = word[1:-1].replace("%%", "%").replace('\\"', '"').replace("\\\\", "\\")
            key, _, val = value.partition("=")
            assert key not in out, f"{key} set twice"
            out[key] = val
    return out


def test_dropin_path_mode_and_section() -> None:
    f = render_proxy_dropin(plan_with())
    assert f.path == PROXY_DROPIN
    assert f.path == "/etc/systemd/system/snap.k8s.containerd.service.d/http-proxy.conf"
    assert f.mode == 0o644
    lines = [line for line in f.text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "[Service]"
    assert all(line.startswith("Environment=") for line in lines[1:])


def test_upper_and_lower_case_variables() -> None:
    env = environment(render_proxy_dropin(plan_with()).text)
    assert set(env) == {
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://squid.internal:3128"
    assert env["NO_PROXY"] == env["no_proxy"]


def test_only_https_proxy() -> None:
    plan = plan_with(proxy={"https": "http://p:3128"})
    env = environment(render_proxy_dropin(plan).text)
    assert "HTTP_PROXY" not in env and "http_proxy" not in env
    assert env["HTTPS_PROXY"] == "http://p:3128"


def test_no_proxy_covers_cluster_nodes_mirror_localhost() -> None:
    plan = plan_with(
        access=["proxy", "mirror"],
        mirror={"url": "https://mirror.internal:5443"},
        network={"pod_cidr": "10.100.0.0/16", "service_cidr": "10.200.0.0/24"},
    )
    items = environment(render_proxy_dropin(plan).text)["NO_PROXY"].split(",")
    assert items == [
        "10.100.0.0/16",
        "10.200.0.0/24",
        "10.20.0.11",
        "10.20.0.12",
        "mirror.internal",
        "localhost",
        "127.0.0.1",
    ]


def test_no_proxy_defaults_and_user_additions_deduplicated() -> None:
    plan = plan_with(
        proxy={
            "http": "http://p:3128",
            "no_proxy": [".corp.example", "localhost", "10.20.0.11", ".corp.example"],
        }
    )
    items = no_proxy_entries(plan)
    assert items == [
        "10.1.0.0/16",
        "10.152.183.0/24",
        "10.20.0.11",
        "10.20.0.12",
        "localhost",
        "127.0.0.1",
        ".corp.example",
    ]
    assert len(items) == len(set(items))


def test_no_mirror_means_no_mirror_entry() -> None:
    assert "mirror.internal" not in no_proxy_entries(plan_with())


def test_systemd_quoting_escapes_specifiers_quotes_and_backslashes() -> None:
    assert systemd_quote("A=b c") == '"A=b c"'
    assert systemd_quote("A=50%") == '"A=50%%"'
    assert systemd_quote('A="x"\\y') == '"A=\\"x\\"\\\\y"'
    with pytest.raises(ValueError, match="newline"):
        systemd_quote("A=b\nExecStart=/bin/evil")


def test_rendering_is_deterministic() -> None:
    assert render_proxy_dropin(plan_with()).content == render_proxy_dropin(plan_with()).content


def test_plan_without_proxy_is_a_programming_error() -> None:
    plan = parse_plan({"access": ["sideload"], "nodes": [{"name": "n", "address": "10.0.0.1"}]})
    with pytest.raises(ValueError, match="no proxy"):
        render_proxy_dropin(plan)


def test_an_http_only_proxy_also_serves_https() -> None:
    """Registries are https: a plan with only proxy.http must still set HTTPS_PROXY."""
    from airgap.render.proxy import proxy_environment

    env = dict(proxy_environment(plan_with(proxy={"http": "http://squid.internal:3128"})))
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[key] == "http://squid.internal:3128", key
