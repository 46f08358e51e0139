"""Image access from the node: the proxy (CONNECT to every upstream, and to the token
realms and blob hosts a pull reaches, airgap.preflight.registry_checks), NO_PROXY, and
the mirror (its /v2/ with the plan's CA; every locked manifest in registry_checks)."""

from __future__ import annotations

import ipaddress
import re
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airgap.bundle import Bundle
from airgap.errors import AirgapError
from airgap.mediatypes import MANIFEST_ACCEPT
from airgap.mirror.plan import split_path
from airgap.nodes import Node, has_command, node_tmp, read_text
from airgap.plan import CONTAINERD_UNIT, PROXY_DROPIN, Plan, mirror_credentials
from airgap.plan.images import ImageRef, registries, upstream_server
from airgap.plan.lock import ImageLock, LockedImage
from airgap.preflight.registry_checks import (
    TLS_CODES,
    TRANSFER_TIMEOUT,
    check_pull_hosts,
    curl_quote,
    platform_digest,
    probes_from,
)
from airgap.preflight.report import Check, CheckStatus, last_line
from airgap.render.proxy import render_proxy_dropin
from airgap.render.sync import mirror_path

CURL_TIMEOUT = 20


MIRROR_CA_TMP = "/tmp/k8s-airgap-preflight-mirror-ca.crt"
MIRROR_IMAGES_CA_TMP = "/tmp/k8s-airgap-preflight-mirror-images-ca.crt"

SHOWN = 5  # missing images named in a Check; the rest counted


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


def curl_headers(node: Node, args: Sequence[str], url: str) -> tuple[int, str, str, str, str]:
    """As curl_status, plus the response headers (``-D -``: the registry's 401 names the
    token realm a pull goes to next). The codes are the last line of stdout."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-D", "-", "-w", "\n" + _CURL_FMT,
            "--max-time", str(CURL_TIMEOUT), *args, url]
    res = node.run(argv, check=False, timeout=CURL_TIMEOUT + 15)
    dump, _, last = res.stdout.rstrip().rpartition("\n")
    codes = [*last.split(), "000", "000"][:2]
    if not all(c.isdigit() for c in codes):
        codes, dump = ["000", "000"], res.stdout
    return res.returncode, codes[0], codes[1], last_line(res.stderr), dump


def check_proxy(node: Node, plan: Plan, images: Sequence[ImageRef],
                lock: ImageLock | None = None) -> list[Check]:
    """Every upstream registry's /v2/ through the proxy, then the other hosts a pull
    reaches: the token realm its 401 names and where its blobs redirect (with a lock)."""
    assert plan.proxy is not None
    proxy = plan.proxy.https or plan.proxy.http
    assert proxy is not None
    if not has_command(node, "curl"):
        return [Check("proxy", CheckStatus.fail, "curl is not installed on the node",
                      "install curl (the check runs on the node, as containerd would)")]
    out = []
    answered: list[tuple[str, str]] = []
    for registry in registries(images):
        server = upstream_server(registry)
        rc, http, connect, err, dump = curl_headers(node, ["--proxy", proxy], f"{server}/v2/")
        name = f"proxy -> {registry}"
        if rc == 0 and http in ("200", "401"):
            out.append(Check(name, CheckStatus.ok, f"CONNECT {connect}, registry answered {http}"))
            answered.append((registry, dump))
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
    out += check_pull_hosts(node, plan, proxy, probes_from(answered), images, lock)
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
        tmp = node_tmp(MIRROR_CA_TMP, node)
        node.write(tmp, ca_pem, 0o644)
        args += ["--cacert", tmp]
    try:
        rc, http, _, err = curl_status(node, args, f"{mirror.url}/v2/")
    finally:
        if ca_pem is not None and mirror.scheme == "https":
            node.run(["rm", "-f", tmp], check=False)
    if rc == 0 and http in ("200", "401"):
        return [Check("mirror", CheckStatus.ok, f"{mirror.url} answered {http}")]
    if rc in (35, 51, 58, 60, 77, 83, 90, 91):
        return [Check("mirror", CheckStatus.fail, f"TLS to {mirror.url} fails: {err}",
                      "set mirror.ca_file to the CA that signed the mirror's certificate")]
    return [Check("mirror", CheckStatus.fail,
                  f"{mirror.url} not reachable (curl exit {rc}, http {http}): {err}",
                  f"check that the mirror is up and reachable from {node.name}")]


# -- the mirror holds every locked manifest -------------------------------------------------

@dataclass(frozen=True)
class ManifestAsk:
    """One manifest the mirror must serve: an image's locked digest, or the digest of
    one of its platform manifests (``platform`` set)."""

    image: LockedImage
    repository: str
    digest: str
    platform: str = ""

    @property
    def path(self) -> str:
        return f"/v2/{self.repository}/manifests/{self.digest}"

    def label(self) -> str:
        what = f"{self.image.ref.name}@{self.digest}"
        return f"{what} ({self.platform})" if self.platform else what


def manifest_asks(plan: Plan, lock: ImageLock) -> list[ManifestAsk]:
    """Every manifest a node pulls from the mirror, by digest, in the repository
    `invoke mirror` writes (mirror_path): each image's locked digest and, for an index,
    the platform manifest of each platform of the plan. One ask per path."""
    asks: dict[str, ManifestAsk] = {}
    for img in lock.images:
        repo, _, _ = split_path(mirror_path(plan, img.ref))
        wanted = [ManifestAsk(img, repo, img.digest)]
        if img.platforms:
            for p in plan.platforms:
                d = platform_digest(img, p)
                if d is not None and d != img.digest:
                    wanted.append(ManifestAsk(img, repo, d, p))
        for ask in wanted:
            asks.setdefault(ask.path, ask)
    return list(asks.values())


# One line per transfer: "<http_code> <url>" (000 when the transfer failed).
MIRROR_WRITE_OUT = "%{http_code} %{url_effective}\\n"


def render_mirror_config(base_url: str, asks: Sequence[ManifestAsk], *, cacert: str | None,
                         credentials: tuple[str, str] | None) -> bytes:
    """curl's config (read from stdin with ``-K -``): one HEAD per manifest over one
    connection, never the proxy, the plan's CA, the login; write-out per transfer."""
    lines = [
        "silent", "show-error", "head",
        f"noproxy = {curl_quote('*')}",
        f"max-time = {TRANSFER_TIMEOUT}",
        f"connect-timeout = {TRANSFER_TIMEOUT // 2}",
        f"header = {curl_quote('Accept: ' + MANIFEST_ACCEPT)}",
        f'write-out = "{MIRROR_WRITE_OUT}"',
    ]
    if cacert is not None:
        lines.append(f"cacert = {curl_quote(cacert)}")
    if credentials is not None:
        lines.append(f"user = {curl_quote(credentials[0] + ':' + credentials[1])}")
    for ask in asks:
        lines += [f"url = {curl_quote(base_url + ask.path)}", 'output = "/dev/null"']
    return ("\n".join(lines) + "\n").encode()


def parse_mirror_lines(stdout: str) -> dict[str, str]:
    """``<http_code> <url>`` lines -> the HTTP code by request path. Lines that are not
    one of ours (a curl warning on stdout) are ignored; a path asked for and missing
    from the result got no answer (curl killed by the time-out)."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        code, _, url = line.strip().partition(" ")
        if not re.fullmatch(r"\d{3}", code) or not url:
            continue
        path = urllib.parse.urlsplit(url).path
        if path.startswith("/v2/"):
            out[path] = code
    return out


def _listed(asks: Sequence[ManifestAsk]) -> str:
    shown = ", ".join(a.label() for a in asks[:SHOWN])
    more = len(asks) - SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def judge_mirror(plan: Plan, asks: Sequence[ManifestAsk], codes: Mapping[str, str],
                 curl_error: str, *, has_login: bool, bundle: Path | None,
                 bundle_has_store: bool) -> Check:
    """One verdict for every locked manifest, with the fix for the worst problem: a
    login first (nothing else can be judged through a 401), then an unreachable mirror,
    then what is missing (and which `invoke mirror` puts it there)."""
    assert plan.mirror is not None
    name, url = "mirror images", plan.mirror.url
    images = len({a.image.ref.name for a in asks})
    by: dict[str, list[ManifestAsk]] = {}
    for ask in asks:
        code = codes.get(ask.path, "none")
        kind = ("ok" if code == "200" else "missing" if code == "404" else
                "login" if code in ("401", "403") else "down" if code in ("000", "none") else
                "other")
        by.setdefault(kind, []).append(ask)
    if "login" in by:
        m = plan.mirror
        if not has_login:
            return Check(name, CheckStatus.fail,
                         f"{url} asks for a login (HTTP {codes[by['login'][0].path]}) and the "
                         "plan names no credentials",
                         "set mirror.username_env and mirror.password_env in the plan to the "
                         "NAMES of two environment variables, and export them before "
                         "preflight")
        return Check(name, CheckStatus.fail,
                     f"{url} refused the login from ${m.username_env} "
                     f"(HTTP {codes[by['login'][0].path]}) for {_listed(by['login'])}",
                     f"check ${m.username_env} and ${m.password_env} and that this user may "
                     "pull every repository of the mirror")
    if "down" in by:
        m_rc = re.match(r"curl: \((\d+)\)", curl_error)
        if m_rc and int(m_rc.group(1)) in TLS_CODES:
            return Check(name, CheckStatus.fail, f"TLS to {url} fails: {curl_error}",
                         "set mirror.ca_file to the CA that signed the mirror's certificate")
        return Check(name, CheckStatus.fail,
                     f"{url} did not answer {len(by['down'])} of {len(asks)} manifest "
                     f"requests: {curl_error or 'no answer before the time-out'}",
                     "check that the mirror is up and reachable from the node (see the "
                     "`mirror` check)")
    if "other" in by:
        first = by["other"][0]
        return Check(name, CheckStatus.fail,
                     f"{url} answered HTTP {codes[first.path]} for {_listed(by['other'])}",
                     f"look at the mirror's log for {first.path}")
    if "missing" in by:
        missing = by["missing"]
        n_img = len({a.image.ref.name for a in missing})
        if bundle is not None and bundle_has_store:
            fix = (f"`invoke mirror --plan PLAN --from-bundle {bundle}` (the bundle's image "
                   "store holds them)")
        else:
            fix = ("`invoke mirror --plan PLAN --bundle BUNDLE` on the connected side (this "
                   "bundle has no image store), then bring the mirror back")
        return Check(name, CheckStatus.fail,
                     f"{n_img} of {images} images of images.lock not in the mirror: "
                     f"{_listed(missing)}", fix)
    return Check(name, CheckStatus.ok,
                 f"all {images} images of images.lock in {url} by digest "
                 f"({len(asks)} manifests, {', '.join(plan.platforms)})")


def check_mirror_images(node: Node, plan: Plan, lock: ImageLock | None, ca_pem: bytes | None,
                        bundle: Path | None = None) -> list[Check]:
    """Every manifest a node will pull, asked from the node by digest, in one curl run."""
    name = "mirror images"
    mirror = plan.mirror
    assert mirror is not None
    if lock is None:
        return [Check(name, CheckStatus.skip, "no images.lock: run with --bundle DIR to ask "
                      "the mirror for every locked image")]
    asks = manifest_asks(plan, lock)
    if not asks:
        return [Check(name, CheckStatus.skip, "images.lock names no images")]
    try:
        login = mirror_credentials(plan)
    except AirgapError as exc:
        return [Check(name, CheckStatus.fail, exc.brief, exc.resolution or "")]
    cacert = (node_tmp(MIRROR_IMAGES_CA_TMP, node)
              if ca_pem is not None and mirror.scheme == "https" else None)
    config = render_mirror_config(mirror.url, asks, cacert=cacert, credentials=login)
    if cacert is not None:
        assert ca_pem is not None
        node.write(cacert, ca_pem, 0o644)
    try:
        res = node.run(["curl", "-K", "-"], check=False, input=config,
                       timeout=60 + 2 * len(asks))
    finally:
        if cacert is not None:
            node.run(["rm", "-f", cacert], check=False)
    if res.returncode == 127:
        return [Check(name, CheckStatus.fail, "curl is not installed on the node",
                      "install curl (the check runs on the node, as containerd would)")]
    has_store = bundle is not None and (Bundle(bundle).oci_dir / "index.json").is_file()
    return [judge_mirror(plan, asks, parse_mirror_lines(res.stdout), _curl_error(res.stderr),
                         has_login=login is not None, bundle=bundle, bundle_has_store=has_store)]


def _curl_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("curl: (")]
    return lines[-1] if lines else ""


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
