"""hosts.toml for a mirror named by an IPv6 address: an inline host table, never a header.

containerd 1.6/1.7 (go-toml v1) refuse a table header with '[' or ']' in a key and drop
the whole file; tests/integration/test_hosts_toml_parsers.py and
test_render_containerd_ipv6.py check the readers themselves.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import tomli_w
import tomllib

from airgap.errors import PlanError
from airgap.plan import parse_plan
from airgap.render.hosts import check_hosts_toml, hosts_toml_data, render_hosts_files

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
GHCR = "/etc/containerd/hosts.d/ghcr.io"
# A table header ([a."b"] or [[a]]) whose quoted key holds a bracket.
BRACKET_IN_QUOTED_HEADER = re.compile(r'^\s*\[\[?[^\n]*"[^"\n]*[\[\]][^"\n]*"[^\n]*\]\]?\s*$',
                                      re.MULTILINE)


def plan_with(mirror: dict[str, Any]) -> Any:
    return parse_plan(
        {"access": ["mirror"], "nodes": [{"name": "n", "address": "10.0.0.1"}], "mirror": mirror},
        source="airgap.yaml",
    )


def hosts_text(mirror: dict[str, Any], registry: str = "ghcr.io") -> str:
    files = render_hosts_files(plan_with(mirror), [registry], CA)
    (text,) = [f.text for f in files if f.path.endswith("/hosts.toml")]
    return text


def table_headers(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("[")]


def test_the_pattern_catches_the_old_form() -> None:
    assert BRACKET_IN_QUOTED_HEADER.search('[host."http://[::1]:5000"]\n')
    assert not BRACKET_IN_QUOTED_HEADER.search('[host."http://10.0.0.1:5000"]\n')


@pytest.mark.parametrize("mirror", [
    {"url": "http://[::1]:5000"},
    {"url": "https://[fd00::5]:5443"},
    {"url": "https://[fd00:0:0:0::5]:5443", "path_prefix": "my/own/{registry}"},
    {"url": "http://[::1]"},
])
def test_ipv6_mirror_is_an_inline_table_that_reads_back(mirror: dict[str, Any]) -> None:
    text = hosts_text(mirror)
    doc = tomllib.loads(text)
    assert BRACKET_IN_QUOTED_HEADER.search(text) is None, text
    assert table_headers(text) == [], text  # no header at all: everything is key = value
    plan = plan_with(mirror)
    prefix = "my/own/ghcr.io" if mirror.get("path_prefix") else ""
    assert doc == hosts_toml_data("ghcr.io", plan.mirror, prefix, with_ca=plan.mirror.scheme
                                  == "https")
    (url,) = doc["host"]
    assert url.startswith(mirror["url"]) and doc["server"] == url
    (line,) = [ln for ln in text.splitlines() if ln.startswith("host = ")]
    assert line.startswith(f'host = {{ "{url}" = {{ capabilities = ["pull", "resolve"]')
    assert check_hosts_toml(text, directory=GHCR, exists=lambda p: True) == []


def test_ipv6_with_ca_and_nested_path_keeps_every_key_in_the_inline_entry() -> None:
    text = hosts_text({"url": "https://[fd00::5]:5443", "path_prefix": "m/{registry}"})
    url = "https://[fd00::5]:5443/v2/m/ghcr.io"
    assert text.endswith(
        f'host = {{ "{url}" = {{ capabilities = ["pull", "resolve"], ca = "ca.crt", '
        "override_path = true } }\n"
    )
    assert tomllib.loads(text)["host"][url] == {
        "capabilities": ["pull", "resolve"], "ca": "ca.crt", "override_path": True,
    }


@pytest.mark.parametrize("mirror", [
    {"url": "http://10.10.10.10:5050"},
    {"url": "https://mirror.internal:5443"},
    {"url": "https://10.10.10.10:5050", "path_prefix": "my/own/{registry}"},
    {"url": "https://m.internal:5000", "fallback": True},
])
def test_every_other_mirror_is_exactly_what_tomli_w_writes(mirror: dict[str, Any]) -> None:
    plan = plan_with(mirror)
    prefix = "my/own/ghcr.io" if mirror.get("path_prefix") else ""
    data = hosts_toml_data("ghcr.io", plan.mirror, prefix, with_ca=plan.mirror.scheme == "https")
    text = hosts_text(mirror)
    body = "".join(text.splitlines(keepends=True)[2:])  # after the two comment lines
    assert body == tomli_w.dumps(data)
    assert '[host."' in body


def test_ipv6_mirror_with_fallback_is_refused_naming_mirror_url() -> None:
    with pytest.raises(PlanError) as err:
        hosts_text({"url": "http://[::1]:5000", "fallback": True})
    brief = err.value.brief
    assert brief.startswith("airgap.yaml: mirror.url 'http://[::1]:5000'"), brief
    assert "fallback: false" in brief
    assert "\n" not in brief


def test_checker_flags_a_bracket_in_a_table_header() -> None:
    text = (
        'server = "http://[::1]:5000"\ncapabilities = ["pull", "resolve"]\n\n'
        '[host."http://[::1]:5000"]\ncapabilities = ["pull", "resolve"]\n'
    )
    assert BRACKET_IN_QUOTED_HEADER.search(text)
    problems = check_hosts_toml(text, directory=GHCR, exists=lambda p: True)
    assert problems == [
        'line 4: [host."http://[::1]:5000"]: containerd 1.6/1.7 (go-toml v1) cannot read a '
        "table header with '[' or ']' in a key and ignores the whole file; write that host "
        "as an inline table"
    ]


def test_checker_flags_an_inline_host_containerd_2_would_not_try() -> None:
    other = (
        'server = "https://ghcr.io"\n'
        'host = { "http://[::1]:5000" = { capabilities = ["pull", "resolve"] } }\n'
    )
    assert check_hosts_toml(other, directory=GHCR, exists=lambda p: True) == [
        'host."http://[::1]:5000": not a [host."URL"] table, so containerd 2.x never tries it'
    ]
    differs = (
        'server = "http://[::1]:5000"\n'
        'host = { "http://[::1]:5000" = { capabilities = ["pull", "resolve"] } }\n'
    )
    (problem,) = check_hosts_toml(differs, directory=GHCR, exists=lambda p: True)
    assert "containerd 2.x uses only server" in problem


def test_checker_reads_multi_line_arrays_as_values_not_headers() -> None:
    text = 'server = "http://m:5000"\nclient = [\n  ["a.crt", "a.key"],\n]\n\n' \
        '[host."http://m:5000"]\ncapabilities = ["pull"]\nclient = [\n  ["a.crt", "a.key"],\n]\n'
    assert check_hosts_toml(text, directory=GHCR, exists=lambda p: True) == []
