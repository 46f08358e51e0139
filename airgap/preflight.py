"""Preflight: find on the nodes, before anything is installed, what breaks bootstrap.

Most air-gap failures surface only at ``k8s bootstrap`` or at the first image pull: no
default route, a proxy that refuses CONNECT, NO_PROXY without the pod CIDR, a firewall
between two nodes. Every check here runs ON the node (through Node.run), because what
matters is what the node can reach, not what the workstation can.

Port checks are TCP connects from node to node. Before install nothing listens, so a
refused connection proves the path (host up, port not filtered); a time-out or
"no route"/"unreachable" means a filter or routing problem. A firewall that rejects
with a TCP reset looks like "refused" and cannot be told apart. VXLAN (8472/udp)
cannot be checked by a connect at all and is reported as not checked.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from airgap.config import PROXY_DROPIN, Mode, Plan, Role, mirror_ca_pem
from airgap.config import Node as PlanNode
from airgap.errors import AirgapError
from airgap.images import ImageRef, registries, upstream_server
from airgap.nodes import Node, has_command, is_stand_in, read_text

PORTS_ALL = (6443, 6400, 10250, 4240, 4244)
PORTS_CONTROL_PLANE = (2379, 2380, 9963, 10257, 10259)
PROBE_TIMEOUT = 3.0
CURL_TIMEOUT = 20
CLOCK_TOLERANCE = 120.0
HEADROOM = 2 << 30
MIN_FREE = 4 << 30
MIRROR_CA_TMP = "/tmp/k8s-airgap-preflight-mirror-ca.crt"


class CheckStatus(str, Enum):
    ok = "ok"
    warn = "warn"
    fail = "fail"
    skip = "skipped"


@dataclass
class Check:
    name: str
    status: CheckStatus
    detail: str = ""
    fix: str = ""


@dataclass
class NodeChecks:
    name: str
    role: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status is CheckStatus.fail]

    def get(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def named(self, prefix: str) -> list[Check]:
        return [c for c in self.checks if c.name.startswith(prefix)]


@dataclass
class PreflightReport:
    nodes: list[NodeChecks]

    @property
    def ok(self) -> bool:
        return not any(n.failed for n in self.nodes)

    def node(self, name: str) -> NodeChecks:
        return next(n for n in self.nodes if n.name == name)


# --- pure helpers -------------------------------------------------------------------


def ports_for(target: PlanNode) -> tuple[int, ...]:
    """TCP ports another node must reach on ``target`` (FACTS: ports between nodes)."""
    if target.role is Role.control_plane:
        return PORTS_ALL + PORTS_CONTROL_PLANE
    return PORTS_ALL


# Runs on the node: connect to every host:port at once, print one JSON object.
PROBE_PY = r"""
import errno, json, socket, sys
from concurrent.futures import ThreadPoolExecutor
t = float(sys.argv[1])
def probe(target):
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(t)
    try:
        s.connect((host, int(port)))
        r = "open"
    except ConnectionRefusedError:
        r = "refused"
    except socket.timeout:
        r = "timeout"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
    return target, r
with ThreadPoolExecutor(64) as ex:
    print(json.dumps(dict(ex.map(probe, sys.argv[2:]))))
"""

# Fallback when the node has no python3: bash's /dev/tcp, one target at a time.
PROBE_BASH = r"""
t=$1; shift
for target in "$@"; do
  host=${target%:*}; port=${target##*:}
  err=$(timeout "$t" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>&1)
  rc=$?
  if [ $rc -eq 0 ]; then r=open
  elif [ $rc -eq 124 ]; then r=timeout
  else case $err in
    *refused*) r=refused ;;
    *"No route"*) r=EHOSTUNREACH ;;
    *unreachable*) r=ENETUNREACH ;;
    *) r=error ;;
  esac; fi
  echo "$target $r"
done
"""

REACHABLE = {"open", "refused"}


def probe_ports(
    node: Node, targets: Sequence[str], timeout: float = PROBE_TIMEOUT
) -> dict[str, str]:
    """host:port -> open | refused | timeout | EHOSTUNREACH | ... as seen from the node."""
    if not targets:
        return {}
    limit = timeout * (1 + len(targets)) + 30
    if has_command(node, "python3"):
        res = node.run(["python3", "-c", PROBE_PY, str(timeout), *targets], timeout=limit)
        parsed: dict[str, str] = json.loads(res.stdout)
        return parsed
    res = node.run(["bash", "-c", PROBE_BASH, "probe", str(int(timeout) or 1), *targets],
                   timeout=limit)
    out = {}
    for line in res.stdout.splitlines():
        target, _, result = line.partition(" ")
        out[target] = result
    return out


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


def _last_line(text: str) -> str:
    """The line that says what went wrong: curl's own "curl: (N) ..." line, else the last."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in lines:
        if line.startswith("curl: ("):
            return line
    return lines[-1] if lines else ""


# --- checks -------------------------------------------------------------------------


@dataclass
class _Inputs:
    plan: Plan
    images: list[ImageRef]
    required_bytes: int
    clock: Callable[[], float]
    clock_tolerance: float
    ca_pem: bytes | None


def check_route(node: Node, plan: Plan, spec: PlanNode) -> list[Check]:
    from airgap.render.route import render_route

    rf = render_route(plan, spec)
    fix_add = shlex.join(rf.command)
    current = node.run(rf.check, check=False).stdout.strip()
    if not current:
        files = ", ".join(f.path for f in rf.files) or "(route_persistence: none)"
        return [Check("default route", CheckStatus.fail, "no default route",
                      f"{fix_add} (now); persistent: {files} (`invoke deploy` writes both)")]
    if " via " in f" {current} ":
        return [Check("default route", CheckStatus.ok, f"{current} (a real gateway)")]
    out = [Check("default route", CheckStatus.ok, current)]
    if not rf.files:
        out.append(Check("route persistent", CheckStatus.warn,
                         "route_persistence: none; the placeholder is lost at reboot",
                         "set network.route_persistence (netplan or networkd) in the plan"))
        return out
    stale = [f.path for f in rf.files if (read_text(node, f.path) or "").encode() != f.content]
    if stale:
        out.append(Check("route persistent", CheckStatus.fail,
                         f"missing or different: {', '.join(stale)}; the route is lost at reboot",
                         "`invoke deploy` writes it (preview: `invoke render`)"))
    else:
        out.append(Check("route persistent", CheckStatus.ok, ", ".join(f.path for f in rf.files)))
    return out


def check_ports(node: Node, plan: Plan, spec: PlanNode) -> list[Check]:
    others = [n for n in plan.nodes if n.name != spec.name]
    if not others:
        return []
    targets = {f"{o.address}:{p}": (o, p) for o in others for p in ports_for(o)}
    results = probe_ports(node, list(targets))
    out = []
    for o in others:
        mine = [(p, results.get(f"{o.address}:{p}", "not probed")) for p in ports_for(o)]
        blocked = [(p, r) for p, r in mine if r not in REACHABLE]
        if blocked:
            what = ", ".join(f"{p} ({r})" for p, r in blocked)
            out.append(Check(
                f"ports -> {o.name}", CheckStatus.fail, f"blocked: {what}",
                f"allow TCP {','.join(str(p) for p, _ in blocked)} from {spec.address} "
                f"to {o.address} (firewall, security group, routes)",
            ))
        else:
            listening = [str(p) for p, r in mine if r == "open"]
            detail = f"{len(mine)} TCP ports reachable"
            if listening:
                detail += f" (listening: {' '.join(listening)})"
            out.append(Check(f"ports -> {o.name}", CheckStatus.ok, detail))
    out.append(Check("8472/udp (VXLAN)", CheckStatus.skip,
                     "UDP cannot be checked by a connect",
                     "make sure UDP 8472 is allowed between all nodes"))
    return out


# curl prints "<http_code> <connect_code>" (CONNECT's reply from the proxy).
_CURL_FMT = "%{http_code} %{http_connect}"


def _curl(node: Node, args: Sequence[str], url: str) -> tuple[int, str, str, str]:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", _CURL_FMT, "--max-time", str(CURL_TIMEOUT),
            *args, url]
    res = node.run(argv, check=False, timeout=CURL_TIMEOUT + 15)
    codes = [*res.stdout.split(), "000", "000"][:2]
    return res.returncode, codes[0], codes[1], _last_line(res.stderr)


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
        rc, http, connect, err = _curl(node, ["--proxy", proxy], f"{server}/v2/")
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
    from airgap.render.proxy import render_proxy_dropin

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
    existing = read_text(node, PROXY_DROPIN)
    if existing is not None:
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
        rc, http, _, err = _curl(node, args, f"{mirror.url}/v2/")
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


DF_SCRIPT = 'for p in /var/lib/snapd /var/lib /var /; do [ -e "$p" ] && exec df -Pk "$p"; done'


def check_disk(node: Node, required: int) -> list[Check]:
    res = node.run(["sh", "-c", DF_SCRIPT], check=False)
    lines = res.stdout.strip().splitlines()
    cols = lines[-1].split() if len(lines) >= 2 else []
    if not res.ok or len(cols) < 6 or not cols[3].isdigit():
        why = _last_line(res.stderr)
        return [Check("disk", CheckStatus.fail, f"cannot read free space: {why}")]
    free = int(cols[3]) * 1024
    detail = f"{_gib(free)} free on {cols[5]}, need {_gib(required)}"
    if free < required:
        return [Check("disk", CheckStatus.fail, detail,
                      f"free {_gib(required - free)} on {cols[5]} (snaps and images live in /var)")]
    return [Check("disk", CheckStatus.ok, detail)]


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


SNAPD_SOCKET = "/run/snapd.socket"


def check_snapd(node: Node, stand_in: bool) -> list[Check]:
    if stand_in:
        return [Check("snapd", CheckStatus.skip,
                      "runtime stand-in, the k8s snap is not available here")]
    if not has_command(node, "snap"):
        return [Check("snapd", CheckStatus.fail, "no `snap` command",
                      "install snapd from the distribution media (e.g. the snapd .deb)")]
    start = "systemctl enable --now snapd.socket snapd.service"
    # Without the daemon `snap version` waits ~25 s and prints "snapd unavailable".
    if not node.run(["test", "-S", SNAPD_SOCKET], check=False).ok:
        return [Check("snapd", CheckStatus.fail, f"snapd is not running (no {SNAPD_SOCKET})",
                      start)]
    res = node.run(["snap", "version"], check=False, timeout=60)
    versions = dict(line.split(None, 1) for line in res.stdout.splitlines() if " " in line)
    snapd = versions.get("snapd", "").strip()
    if not res.ok or not snapd or snapd == "unavailable":
        why = _last_line(res.stderr) or f"snapd {snapd or 'unknown'}"
        return [Check("snapd", CheckStatus.fail, f"`snap version`: {why}", start)]
    return [Check("snapd", CheckStatus.ok, f"snapd {snapd}")]


def check_clock(node: Node, clock: Callable[[], float], tolerance: float) -> list[Check]:
    before = clock()
    res = node.run(["date", "+%s"], check=False)
    after = clock()
    if not res.ok or not res.stdout.strip().isdigit():
        return [Check("clock", CheckStatus.fail, "cannot read the node's time")]
    offset = int(res.stdout.strip()) - (before + after) / 2
    ntp = node.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], check=False)
    sync = ntp.stdout.strip() if ntp.ok else ""
    detail = f"{offset:+.0f} s from this machine"
    if sync:
        detail += f", NTP synchronised: {sync}"
    if abs(offset) > tolerance:
        return [Check("clock", CheckStatus.fail, detail,
                      "set the time (timedatectl set-time, or an NTP server inside the air gap); "
                      "certificates and join tokens are time-bound")]
    if sync == "no":
        return [Check("clock", CheckStatus.warn, detail,
                      "configure an NTP server reachable inside the air gap (chrony, timesyncd)")]
    return [Check("clock", CheckStatus.ok, detail)]


def _checks_for(node: Node, spec: PlanNode, inp: _Inputs) -> NodeChecks:
    result = NodeChecks(spec.name, spec.role.value)
    plan = inp.plan
    steps: list[Callable[[], list[Check]]] = [
        lambda: check_route(node, plan, spec),
        lambda: check_ports(node, plan, spec),
    ]
    if plan.has(Mode.proxy):
        steps += [lambda: check_proxy(node, plan, inp.images), lambda: check_no_proxy(node, plan)]
    if plan.has(Mode.mirror):
        steps.append(lambda: check_mirror(node, plan, inp.ca_pem))
    steps.append(lambda: check_disk(node, inp.required_bytes))
    try:
        stand_in = is_stand_in(node)
    except AirgapError as exc:
        result.checks.append(Check("connect", CheckStatus.fail, exc.brief, exc.resolution or ""))
        return result
    steps += [lambda: check_snapd(node, stand_in),
              lambda: check_clock(node, inp.clock, inp.clock_tolerance)]
    for step in steps:
        try:
            result.checks.extend(step())
        except AirgapError as exc:
            result.checks.append(Check("error", CheckStatus.fail, exc.brief, exc.resolution or ""))
    return result


def required_space(bundle: Path | None) -> int:
    """Free bytes a node needs: the bundle staged and installed (x2) plus headroom."""
    if bundle is None or not bundle.is_dir():
        return MIN_FREE
    size = sum(p.stat().st_size for sub in ("snaps", "images") if (bundle / sub).is_dir()
               for p in (bundle / sub).iterdir() if p.is_file())
    return max(MIN_FREE, 2 * size + HEADROOM)


def preflight_images(plan: Plan, bundle: Path | None) -> list[ImageRef]:
    """The images whose registries the proxy must reach: the bundle's lock, else defaults."""
    if bundle is not None and (bundle / "images.lock").is_file():
        from airgap.lock import read_lock

        return read_lock(bundle / "images.lock").refs()
    from airgap.config import workload_images
    from airgap.defaults import default_images
    from airgap.images import merge_images

    return merge_images(default_images(plan.k8s.channel), workload_images(plan))


def preflight(
    plan: Plan,
    nodes: Mapping[str, Node],
    *,
    bundle: Path | None = None,
    images: Iterable[ImageRef] | None = None,
    clock: Callable[[], float] = time.time,
    clock_tolerance: float = CLOCK_TOLERANCE,
    parallel: int = 8,
) -> PreflightReport:
    """Run every check on every node in parallel; failures are in the report."""
    inp = _Inputs(
        plan=plan,
        images=list(images) if images is not None else preflight_images(plan, bundle),
        required_bytes=required_space(bundle),
        clock=clock,
        clock_tolerance=clock_tolerance,
        ca_pem=mirror_ca_pem(plan) if plan.has(Mode.mirror) else None,
    )
    specs = [n for n in plan.nodes if n.name in nodes]
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(specs)))) as pool:
        results = list(pool.map(lambda s: _checks_for(nodes[s.name], s, inp), specs))
    return PreflightReport(results)


_STYLE = {
    CheckStatus.ok: "green",
    CheckStatus.warn: "yellow",
    CheckStatus.fail: "bold red",
    CheckStatus.skip: "dim",
}


def report_tables(report: PreflightReport) -> list[Any]:
    """One rich Table per node: check, result, detail, fix."""
    from rich.table import Table

    tables = []
    for n in report.nodes:
        t = Table(title=f"{n.name} ({n.role})", title_justify="left")
        t.add_column("check")
        t.add_column("result")
        t.add_column("detail", overflow="fold")
        t.add_column("fix", overflow="fold")
        for c in n.checks:
            t.add_row(c.name, f"[{_STYLE[c.status]}]{c.status.value}[/]", c.detail, c.fix)
        tables.append(t)
    return tables
