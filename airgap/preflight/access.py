"""Image access from the node: the proxy (CONNECT to every upstream, NO_PROXY) and
the mirror (its /v2/ with the plan's CA)."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Sequence

from airgap.nodes import Node, has_command, read_text
from airgap.plan import CONTAINERD_UNIT, PROXY_DROPIN, Plan
from airgap.plan.images import ImageRef, registries, upstream_server
from airgap.preflight.report import Check, CheckStatus, last_line
from airgap.render.proxy import render_proxy_dropin

CURL_TIMEOUT = 20


MIRROR_CA_TMP = "/tmp/k8s-airgap-preflight-mirror-ca.crt"


def _entry_covers(entry: str, need: str) -> bool:
    entry = entry.strip().lower()
    need = need.lower()
    if not entry:
        return False
    if entry == "*" or entry == need:
        return True
    try:
        net = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        net = None
    try:
        need_net = ipaddress.ip_network(need, strict=False)
    except ValueError:
        need_net = None
    if net is not None and need_net is not None:
        return need_net.version == net.version and need_net.subnet_of(net)  # type: ignore[arg-type]
    if net is None and need_net is None:
        domain = entry.lstrip("*").lstrip(".")
        return need == domain or need.endswith("." + domain)
    return False


def no_proxy_gaps(no_proxy: str, plan: Plan) -> list[str]:
    """What NO_PROXY must cover (FACTS) and does not: pod/service CIDR, nodes, mirror."""
    needed = [plan.network.pod_cidr, plan.network.service_cidr, "localhost"]
    needed += [n.address for n in plan.nodes]
    if plan.mirror is not None:
        needed.append(plan.mirror.hostname)
    entries = [e for e in no_proxy.split(",") if e.strip()]
    return [n for n in needed if not any(_entry_covers(e, n) for e in entries)]


def dropin_no_proxy(text: str) -> str | None:
    """The NO_PROXY value of a systemd drop-in (either case), None when absent."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("Environment="):
            continue
        for word in shlex.split(line[len("Environment="):]):
            key, _, value = word.partition("=")
            if key in ("NO_PROXY", "no_proxy"):
                return value
    return None


# curl prints "<http_code> <connect_code>" (CONNECT's reply from the proxy).
_CURL_FMT = "%{http_code} %{http_connect}"


def curl_status(node: Node, args: Sequence[str], url: str) -> tuple[int, str, str, str]:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", _CURL_FMT, "--max-time", str(CURL_TIMEOUT),
            *args, url]
    res = node.run(argv, check=False, timeout=CURL_TIMEOUT + 15)
    codes = [*res.stdout.split(), "000", "000"][:2]
    return res.returncode, codes[0], codes[1], last_line(res.stderr)


def check_proxy(node: Node, plan: Plan, images: Sequence[ImageRef]) -> list[Check]:
    assert plan.proxy is not None
    proxy = plan.proxy.https or plan.proxy.http
    assert proxy is not None
    if not has_command(node, "curl"):
        return [Check("proxy", CheckStatus.fail, "curl is not installed on the node",
                      "install curl (the check runs on the node, as containerd would)")]
    out = []
    for registry in registries(images):
        server = upstream_server(registry)
        rc, http, connect, err = curl_status(node, ["--proxy", proxy], f"{server}/v2/")
        name = f"proxy -> {registry}"
        if rc == 0 and http in ("200", "401"):
            out.append(Check(name, CheckStatus.ok, f"CONNECT {connect}, registry answered {http}"))
        elif connect not in ("000", "200"):
            refused = f"the proxy refused CONNECT ({connect}): {err}"
            out.append(Check(name, CheckStatus.fail, refused,
                             f"allow CONNECT to {server.split('//')[1]}:443 on the proxy "
                             "(squid: the registry in the allow-list, 443 in SSL_ports)"))
        elif rc in (5, 7) or (rc == 28 and connect == "000"):
            out.append(Check(name, CheckStatus.fail, f"proxy {proxy} not reachable: {err}",
                             f"check that {proxy} is up and reachable from {node.name} "
                             "(routes, firewall)"))
        elif rc in (35, 51, 58, 60, 77, 83, 90, 91):
            out.append(Check(name, CheckStatus.fail,
                             f"tunnel works but TLS fails: {err}",
                             "install the CA that signed the registry's (or the TLS-inspecting "
                             "proxy's) certificate in the node's trust store"))
        else:
            out.append(Check(name, CheckStatus.fail,
                             f"curl exit {rc}, http {http}, CONNECT {connect}: {err}",
                             f"from {node.name}: https_proxy={proxy} curl -v {server}/v2/"))
    return out


def check_no_proxy(node: Node, plan: Plan) -> list[Check]:

    rendered = dropin_no_proxy(render_proxy_dropin(plan).text) or ""
    gaps = no_proxy_gaps(rendered, plan)
    out = []
    if gaps:
        out.append(Check("NO_PROXY", CheckStatus.fail, f"does not cover {', '.join(gaps)}",
                         "add them to proxy.no_proxy in the plan"))
    else:
        out.append(Check("NO_PROXY", CheckStatus.ok,
                         "covers pod and service CIDRs, node addresses"
                         + (", the mirror" if plan.mirror else "") + ", localhost"))
    effective = check_effective_no_proxy(node, plan)
    out += effective
    existing = read_text(node, PROXY_DROPIN)
    if existing is not None and not effective:  # the unit is not loaded yet
        value = dropin_no_proxy(existing)
        old_gaps = no_proxy_gaps(value or "", plan)
        if old_gaps:
            out.append(Check("NO_PROXY on node", CheckStatus.warn,
                             f"{PROXY_DROPIN} lacks {', '.join(old_gaps)}",
                             "`invoke deploy` replaces it with the rendered drop-in"))
    return out


def check_mirror(node: Node, plan: Plan, ca_pem: bytes | None) -> list[Check]:
    mirror = plan.mirror
    assert mirror is not None
    if not has_command(node, "curl"):
        return [Check("mirror", CheckStatus.fail, "curl is not installed on the node",
                      "install curl (the check runs on the node, as containerd would)")]
    args = ["--noproxy", "*"]
    if ca_pem is not None and mirror.scheme == "https":
        node.write(MIRROR_CA_TMP, ca_pem, 0o644)
        args += ["--cacert", MIRROR_CA_TMP]
    try:
        rc, http, _, err = curl_status(node, args, f"{mirror.url}/v2/")
    finally:
        if ca_pem is not None and mirror.scheme == "https":
            node.run(["rm", "-f", MIRROR_CA_TMP], check=False)
    if rc == 0 and http in ("200", "401"):
        return [Check("mirror", CheckStatus.ok, f"{mirror.url} answered {http}")]
    if rc in (35, 51, 58, 60, 77, 83, 90, 91):
        return [Check("mirror", CheckStatus.fail, f"TLS to {mirror.url} fails: {err}",
                      "set mirror.ca_file to the CA that signed the mirror's certificate")]
    return [Check("mirror", CheckStatus.fail,
                  f"{mirror.url} not reachable (curl exit {rc}, http {http}): {err}",
                  f"check that the mirror is up and reachable from {node.name}")]


SHOW_ARGV = ["systemctl", "show", "-p", "LoadState", "-p", "Environment", "-p", "DropInPaths"]


def parse_show(stdout: str) -> dict[str, str]:
    """`systemctl show -p A -p B UNIT` output (KEY=VALUE lines) as a dict."""
    out = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value.strip()
    return out


def environment_no_proxy(environment: str) -> str | None:
    """The NO_PROXY a Go program (containerd) uses from a unit's effective Environment=
    (``systemctl show``: space-separated, quoted where a value has spaces): NO_PROXY if
    set and not empty, else no_proxy; None when neither is set."""
    values: dict[str, str] = {}
    for word in shlex.split(environment):
        key, _, value = word.partition("=")
        values[key] = value
    upper, lower = values.get("NO_PROXY"), values.get("no_proxy")
    return upper if upper else lower


def check_effective_no_proxy(node: Node, plan: Plan) -> list[Check]:
    """NO_PROXY as the runtime's unit really has it, whichever drop-ins set it: another
    drop-in sorting after ours, or an edited one, overrides what deploy wrote. [] when
    the unit is not loaded yet (before install; the drop-in file is checked instead)."""
    unit = f"{CONTAINERD_UNIT}.service"
    res = node.run([*SHOW_ARGV, unit], check=False, timeout=30)
    props = parse_show(res.stdout)
    if props.get("LoadState") != "loaded":
        return []
    value = environment_no_proxy(props.get("Environment", ""))
    others = [d for d in props.get("DropInPaths", "").split() if d != PROXY_DROPIN]
    by = (f"; its drop-ins: {', '.join(others)} (and {PROXY_DROPIN})" if others else "")
    fix = (f"remove or fix {others[0]}: systemd applies drop-ins in name order, a later "
           f"one overrides {PROXY_DROPIN}" if others else
           f"run `invoke deploy` (it rewrites {PROXY_DROPIN}), or `systemctl daemon-reload` "
           f"and `systemctl restart {unit}` if the file is right")
    name = "NO_PROXY (runtime)"
    if value is None:
        return [Check(name, CheckStatus.fail, f"{unit} runs with no NO_PROXY at all{by}", fix)]
    gaps = no_proxy_gaps(value, plan)
    if gaps:
        return [Check(name, CheckStatus.fail,
                      f"{unit}'s effective NO_PROXY lacks {', '.join(gaps)}{by}", fix)]
    return [Check(name, CheckStatus.ok, f"{unit}'s effective NO_PROXY covers the cluster")]
