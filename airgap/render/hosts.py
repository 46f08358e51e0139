"""containerd hosts.toml: send every pull for an upstream registry to the mirror.

The seed procedure gets these files wrong in three ways (FACTS): its nested-path
example leaves ``server`` unquoted (not TOML, containerd rejects the file), it points
``ca`` at the strict-confinement path while copying the CA to the classic one, and it
leaves ``server`` at the upstream, so an image missing from the mirror sends the node
into DNS and connect time-outs towards the internet. Here the CA is referenced as
``ca = "ca.crt"``, which containerd resolves against the host's own directory under
both layouts, and ``fallback: false`` makes the mirror the ``server`` too, so a miss
fails at once with "not found".

A mirror URL with an IPv6 literal (``http://[::1]:5000``) cannot go into a table
header: containerd 1.6 and 1.7 read hosts.toml with go-toml v1, which refuses ``[`` or
``]`` inside ``[host."..."]`` and drops the whole file, so pulls go to the upstream.
Such a host is written as an inline table instead. containerd 2.x (go-toml/v2) decodes
it but tries only hosts named by table headers, so it uses ``server`` alone; with
``fallback: false`` that is the same mirror with the same settings. With
``fallback: true`` no form reaches the mirror under every containerd, and the plan is
refused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from airgap.errors import PlanError
from airgap.plan import MirrorSettings, Mode, Plan, mirror_prefix
from airgap.plan.images import upstream_server
from airgap.render import RenderedFile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CA_FILE_NAME = "ca.crt"
CAPABILITIES = ["pull", "resolve"]
_HOST_KEYS = {"capabilities", "ca", "client", "skip_verify", "header", "override_path"}


def mirror_endpoint(mirror: MirrorSettings, prefix: str) -> tuple[str, bool]:
    """The URL containerd should use for ``registry`` and whether it needs override_path.

    With a nested path the URL must name the full API path (``/v2/<prefix>``) and
    ``override_path = true`` stops containerd from appending another ``/v2``.
    """
    base = f"{mirror.scheme}://{mirror.host}"
    if prefix:
        return f"{base}/v2/{prefix}", True
    return base, False


def check_mirror_url(mirror: MirrorSettings, source: str = "") -> None:
    """Refuse a mirror URL that no hosts.toml can send to the mirror under every containerd."""
    if not (mirror.fallback and _needs_inline(mirror.url)):
        return
    where = f"{source}: " if source else ""
    raise PlanError(
        f"{where}mirror.url {mirror.url!r}: a mirror named by an IPv6 address needs "
        "mirror.fallback: false",
        details="containerd 1.6/1.7 cannot read a [host.\"URL\"] header with brackets, and "
        "containerd 2.x never tries a host written any other way: with fallback: true every "
        "pull would go to the upstream registry.",
        resolution="Set mirror.fallback: false, or name the mirror by a host name or an "
        "IPv4 address.",
    )


def hosts_toml_data(
    registry: str, mirror: MirrorSettings, prefix: str = "", *, with_ca: bool
) -> dict[str, Any]:
    """The hosts.toml document for one upstream registry, as data.

    ``prefix``: the validated nested path for this registry (config.mirror_prefix).
    """
    url, override = mirror_endpoint(mirror, prefix)
    check_mirror_url(mirror)
    host: dict[str, Any] = {"capabilities": list(CAPABILITIES)}
    if with_ca:
        host["ca"] = CA_FILE_NAME
    if override:
        host["override_path"] = True
    doc: dict[str, Any] = {}
    if mirror.fallback:
        doc["server"] = upstream_server(registry)
    else:
        # Top-level keys apply to `server` only (FACTS): repeat ca and override_path,
        # or a miss reports an x509 error or a wrong path instead of "not found".
        doc["server"] = url
        doc["capabilities"] = list(CAPABILITIES)
        if with_ca:
            doc["ca"] = CA_FILE_NAME
        if override:
            doc["override_path"] = True
    doc["host"] = {url: host}
    return doc


def render_hosts_toml(
    registry: str, mirror: MirrorSettings, prefix: str = "", *, with_ca: bool
) -> str:
    doc = hosts_toml_data(registry, mirror, prefix, with_ca=with_ca)
    head = (
        f"# containerd registry config for {registry}, written by k8s-airgap.\n"
        f"# Pulls of {registry}/* go to the mirror {mirror.url}"
        + (
            f"; on a miss, containerd falls back to {doc['server']}.\n"
            if mirror.fallback
            else "; a missing image fails at the mirror (no fallback).\n"
        )
    )
    return head + _dumps(doc)


def _needs_inline(url: str) -> bool:
    return "[" in url or "]" in url


def _dumps(doc: dict[str, Any]) -> str:
    """tomli_w's output, except that a host with a bracket becomes an inline table."""
    hosts: dict[str, dict[str, Any]] = doc["host"]
    if not any(_needs_inline(url) for url in hosts):
        return tomli_w.dumps(doc)
    rest = {k: v for k, v in doc.items() if k != "host"}
    entries = ", ".join(f"{_toml_value(url)} = {_inline_table(e)}" for url, e in hosts.items())
    text = tomli_w.dumps(rest) + f"host = {{ {entries} }}\n"
    if tomllib.loads(text) != doc:  # pragma: no cover - a bug here, not the user's
        raise AssertionError(f"inline hosts.toml does not read back:\n{text}")
    return text


def _inline_table(entry: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in entry.items()) + " }"


def _toml_value(value: object) -> str:
    """One value on one line (inline tables may not span lines for go-toml v1)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return tomli_w.dumps({"v": value})[len("v = ") : -1]
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no inline form for {value!r}")


def render_hosts_files(
    plan: Plan, registries: Iterable[str], ca_pem: bytes | None
) -> list[RenderedFile]:
    """hosts.toml (and ca.crt next to it) for every upstream registry the images name.

    Empty unless the plan uses a mirror. ``ca_pem`` is the mirror's CA (see
    ``airgap.plan.mirror_ca_pem``); it is only used for an https mirror.
    """
    mirror = plan.mirror
    if mirror is None or not plan.has(Mode.mirror):
        return []
    check_mirror_url(mirror, plan.source)
    with_ca = ca_pem is not None and mirror.scheme == "https"
    out: list[RenderedFile] = []
    for registry in sorted(set(registries)):
        if registry == mirror.host:
            continue
        # A registry with a port keeps it in the directory name (host:port, FACTS).
        directory = f"{plan.k8s.hosts_dir}/{registry}"
        prefix = mirror_prefix(plan, registry)
        content = render_hosts_toml(registry, mirror, prefix, with_ca=with_ca)
        out.append(RenderedFile(f"{directory}/hosts.toml", content.encode(), 0o644))
        if with_ca:
            assert ca_pem is not None
            out.append(RenderedFile(f"{directory}/{CA_FILE_NAME}", ca_pem, 0o644))
    return sorted(out, key=lambda f: f.path)


def check_hosts_toml(
    content: str, *, directory: str, exists: Callable[[str], bool]
) -> list[str]:
    """Problems containerd would have with a hosts.toml in ``directory`` (empty: none).

    ``exists`` answers whether a path exists on the node, so the same check serves
    rendered files (before they are written) and files already on a node. Beyond
    TOML, it knows the two readers' limits (module docstring): a table header with a
    bracket in a key (go-toml v1 drops the file) and a host that is not a table header
    (containerd 2.x never tries it, unless it is ``server`` with the same settings).
    """
    try:
        doc = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        return [f"not valid TOML: {exc}"]
    problems: list[str] = []

    def check_url(where: str, value: object) -> None:
        if not isinstance(value, str):
            problems.append(f"{where}: must be a quoted string, got {value!r}")
            return
        parts = urlsplit(value if "://" in value else f"https://{value}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{where}: {value!r} is not a registry URL")

    def check_entry(where: str, entry: dict[str, Any]) -> None:
        cas = entry.get("ca")
        for ca in [cas] if isinstance(cas, str) else (cas or []):
            if not isinstance(ca, str):
                problems.append(f"{where}ca: {ca!r} is not a path")
                continue
            path = ca if ca.startswith("/") else f"{directory}/{ca}"
            if not exists(path):
                problems.append(f"{where}ca: {ca!r} resolves to {path}, which does not exist")
        caps = entry.get("capabilities", [])
        if not isinstance(caps, list) or any(c not in ("pull", "resolve", "push") for c in caps):
            problems.append(f"{where}capabilities: {caps!r} is not a list of pull/resolve/push")
        if "override_path" in entry and not isinstance(entry["override_path"], bool):
            problems.append(f"{where}override_path: must be true or false")

    top = {k: v for k, v in doc.items() if k not in ("server", "host")}
    unknown = sorted(set(top) - _HOST_KEYS)
    if unknown:
        problems.append(f"unknown key {unknown[0]!r}")
    if "server" in doc:
        check_url("server", doc["server"])
    check_entry("", top)
    hosts = doc.get("host", {})
    if not isinstance(hosts, dict):
        problems.append("host: must be a table of [host.\"URL\"] sections")
        hosts = {}
    headers = _table_headers(content)
    for number, text, path in headers:
        if any("[" in key or "]" in key for key in path):
            problems.append(
                f"line {number}: {text}: containerd 1.6/1.7 (go-toml v1) cannot read a "
                "table header with '[' or ']' in a key and ignores the whole file; write "
                "that host as an inline table"
            )
    tried = {path[1] for _, _, path in headers if len(path) >= 2 and path[0] == "host"}
    for url, entry in hosts.items():
        if url in tried:
            continue
        if url != doc.get("server"):
            problems.append(
                f'host."{url}": not a [host."URL"] table, so containerd 2.x never tries it'
            )
        elif entry != top:
            problems.append(
                f'host."{url}": containerd 2.x uses only server for it, and the top-level '
                "keys differ from this entry's"
            )
    for url, entry in hosts.items():
        where = f'host."{url}".'
        check_url(where.rstrip("."), url)
        if not isinstance(entry, dict):
            problems.append(f"{where.rstrip('.')}: must be a table")
            continue
        bad = sorted(set(entry) - _HOST_KEYS)
        if bad:
            problems.append(f"{where}{bad[0]}: unknown key")
        check_entry(where, entry)
    return problems


def _table_headers(content: str) -> list[tuple[int, str, list[str]]]:
    """(line number, text, key path) of each table header, [a."b"] or [[a]]."""
    out: list[tuple[int, str, list[str]]] = []
    for number, line in enumerate(content.splitlines(), 1):
        text = line.strip()
        if not text.startswith("["):
            continue
        try:
            node: object = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue  # a line of a multi-line array, not a header
        path: list[str] = []
        while isinstance(node, dict) and len(node) == 1:
            key, node = next(iter(node.items()))
            path.append(key)
            if isinstance(node, list) and len(node) == 1:
                node = node[0]
        out.append((number, text, path))
    return out
