"""Rendered hosts.toml files, read by the go-toml versions containerd 1.6, 1.7 and 2.x use.

Only containerd 1.6 runs here (test_render_containerd_ipv6.py). For the others,
tests/support/gotoml reads each file as containerd's remotes/docker/config does: go-toml
v1 (1.6, 1.7) loads a tree whose `host` must be a table, go-toml/v2 (2.x) decodes the
file and tries only hosts named by `[host."URL"]` headers. Each must take the same server
and host entries from our files as Python's tomllib, and send every pull to the mirror.
The old form, `[host."http://[::1]:5000"]`, shows why: go-toml v1 refuses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w
import tomllib

from airgap.plan import parse_plan
from airgap.render.hosts import check_hosts_toml, hosts_toml_data, render_hosts_files
from tests.support import gotoml
from tests.support.require import need

pytestmark = pytest.mark.integration

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
REGISTRIES = ["ghcr.io", "docker.io"]

ORDINARY = {
    "http-ipv4": {"url": "http://10.10.10.10:5050"},
    "https-name-ca": {"url": "https://mirror.internal:5443"},
    "https-nested": {"url": "https://10.10.10.10:5050", "path_prefix": "my/own/{registry}"},
    "https-fallback": {"url": "https://m.internal:5000", "fallback": True},
}
IPV6 = {
    "http-ipv6-loopback": {"url": "http://[::1]:5000"},
    "https-ipv6-ca": {"url": "https://[fd00::5]:5443"},
    "https-ipv6-nested": {"url": "https://[fd00::5]:5443", "path_prefix": "my/own/{registry}"},
}


@pytest.fixture(scope="module")
def parsers() -> dict[gotoml.GoToml, Path]:
    go = gotoml.find_go()
    need(go, "go is not installed (/usr/local/go/bin/go or on PATH)")
    assert go is not None
    return gotoml.build(go)


def plan_for(mirror: dict[str, Any]) -> Any:
    return parse_plan({
        "access": ["mirror"],
        "nodes": [{"name": "node-1", "address": "10.0.0.1"}],
        "mirror": mirror,
    })


def rendered(mirror: dict[str, Any]) -> dict[str, str]:
    files = render_hosts_files(plan_for(mirror), REGISTRIES, CA)
    return {f.path: f.text for f in files if f.path.endswith("/hosts.toml")}


def settings(entry: dict[str, Any]) -> dict[str, Any]:
    """The keys we write, as containerd sees them (absent list: none; absent bool: false)."""
    return {
        "capabilities": entry.get("capabilities") or [],
        "ca": entry.get("ca"),
        "override_path": bool(entry.get("override_path", False)),
    }


def tried(reading: gotoml.Reading) -> list[str]:
    """The endpoints containerd tries, in order: its [host] entries, then server."""
    return [*reading.hosts, reading.server]


@pytest.mark.parametrize("case", [*ORDINARY, *IPV6])
def test_every_containerd_reader_takes_what_tomllib_takes(
    tmp_path: Path, case: str, parsers: dict[gotoml.GoToml, Path]
) -> None:
    mirror = {**ORDINARY, **IPV6}[case]
    for node_path, text in rendered(mirror).items():
        path = tmp_path / node_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        doc = tomllib.loads(text)
        (url,) = doc["host"]
        top = {k: v for k, v in doc.items() if k not in ("server", "host")}
        inline = case in IPV6
        assert ("[host." in text) is not inline, text
        directory = node_path.rsplit("/", 1)[0]
        assert check_hosts_toml(text, directory=directory, exists=lambda p: True) == []
        for parser, binary in parsers.items():
            where = f"{parser.name} ({parser.used_by}) on {node_path}:\n{text}"
            reading = gotoml.read(binary, path)
            assert reading.parser == f"{parser.module} {parser.version}"
            assert reading.server == doc["server"], where
            assert sorted(reading.decoded) == sorted(doc["host"]), where
            assert settings(reading.decoded[url]) == settings(doc["host"][url]), where
            assert settings(reading.top) == settings(top), where
            if inline and not parser.v1:
                # 2.x decodes the inline host but never tries it: it uses server alone,
                # which is the same mirror with the same settings (fallback: false).
                assert reading.hosts == [], where
                assert reading.server == url and settings(top) == settings(doc["host"][url])
            else:
                assert reading.hosts == list(doc["host"]), where
            if mirror.get("fallback"):
                assert tried(reading) == [url, doc["server"]], where
            else:
                assert set(tried(reading)) == {url}, where


def test_go_toml_v1_refuses_the_ipv6_table_header_tomli_w_writes(
    tmp_path: Path, parsers: dict[gotoml.GoToml, Path]
) -> None:
    mirror = plan_for(IPV6["http-ipv6-loopback"]).mirror
    old = tomli_w.dumps(hosts_toml_data("ghcr.io", mirror, with_ca=False))
    assert '[host."http://[::1]:5000"]' in old
    path = tmp_path / "hosts.toml"
    path.write_text(old)
    assert list(tomllib.loads(old)["host"]) == ["http://[::1]:5000"]
    for parser, binary in parsers.items():
        if parser.v1:
            with pytest.raises(gotoml.ParseError, match="table key cannot contain"):
                gotoml.read(binary, path)
        else:
            assert gotoml.read(binary, path).hosts == ["http://[::1]:5000"], parser.name
    problems = check_hosts_toml(old, directory="/d", exists=lambda p: True)
    assert len(problems) == 1 and "go-toml v1" in problems[0], problems


def test_an_escaped_bracket_is_misread_by_go_toml_v1(
    tmp_path: Path, parsers: dict[gotoml.GoToml, Path]
) -> None:
    """\\u005B/\\u005D in the header: v2 and tomllib decode them, v1 keeps them literally."""
    text = (
        'server = "http://[::1]:5000"\ncapabilities = ["pull", "resolve"]\n\n'
        '[host."http://\\u005B::1\\u005D:5000"]\ncapabilities = ["pull", "resolve"]\n'
    )
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    assert list(tomllib.loads(text)["host"]) == ["http://[::1]:5000"]
    for parser, binary in parsers.items():
        hosts = gotoml.read(binary, path).hosts
        if parser.v1:
            assert hosts == ["http://\\u005B::1\\u005D:5000"], parser.name
        else:
            assert hosts == ["http://[::1]:5000"], parser.name
    problems = check_hosts_toml(text, directory="/d", exists=lambda p: True)
    assert len(problems) == 1 and "go-toml v1" in problems[0], problems
