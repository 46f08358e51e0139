"""The node's network: its default route and the k8s ports between nodes.

Before install nothing listens on the k8s ports, and a connect to a closed port is
refused: exactly what a REJECT rule or a firewall's TCP reset answers. So a port check
first starts a short-lived listener on every node (``LISTEN_PY``: binds each TCP port
the others must reach and 8472/udp, which echoes each datagram), then each node probes
all the others in one exec (``PROBE_PY``), then the listeners are stopped. With a
listener behind the port only "open" proves the path: "refused" is a REJECT rule or a
reset, a time-out a DROP. A port already in use is served by something real (k8s
already running): a connect still proves the path. A port nobody serves (the bind
failed, the node has no python3, or is not in this run) is reported as not checked.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from airgap.errors import AirgapError
from airgap.fanout import fan_out
from airgap.nodes import Node, has_command, read_text
from airgap.plan import Node as PlanNode
from airgap.plan import Plan, Role
from airgap.preflight.report import Check, CheckStatus, last_line
from airgap.render.route import render_route

PORTS_ALL = (6443, 6400, 10250, 4240, 4244)


PORTS_CONTROL_PLANE = (2379, 2380, 9963, 10257, 10259)


VXLAN_PORT = 8472


PROBE_TIMEOUT = 3.0


# The listener's hard lifetime: timeout(1) kills it, and its own deadline ends it, even
# when preflight dies before it stops the listeners.
LISTEN_LIFETIME = 120.0


LISTEN_READY_TIMEOUT = 30.0


def ports_for(target: PlanNode) -> tuple[int, ...]:
    """TCP ports another node must reach on ``target`` (FACTS: ports between nodes)."""
    if target.role is Role.control_plane:
        return PORTS_ALL + PORTS_CONTROL_PLANE
    return PORTS_ALL


# Runs on the node: bind the plan address's TCP ports (argv before --udp) and UDP ports
# (after), print one JSON line of what each bind gave, then accept-and-close TCP and
# echo UDP until the deadline. No SO_REUSEADDR on UDP: it would share a port in use.
LISTEN_PY = r"""
import errno, json, os, select, socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
host = sys.argv[2]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
kinds = {"tcp": [], "udp": []}
kind = "tcp"
for a in sys.argv[3:]:
    if a == "--udp":
        kind = "udp"
    else:
        kinds[kind].append(int(a))
out = {"pid": os.getpid(), "tcp": {}, "udp": {}}
socks = {}
def bind(port, typ):
    s = socket.socket(fam, typ)
    try:
        if typ == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        if typ == socket.SOCK_STREAM:
            s.listen(128)
    except OSError as e:
        s.close()
        if e.errno == errno.EADDRINUSE:
            return "in use"
        return errno.errorcode.get(e.errno, str(e))
    s.setblocking(False)
    socks[s] = typ
    return "bound"
for p in kinds["tcp"]:
    out["tcp"][str(p)] = bind(p, socket.SOCK_STREAM)
for p in kinds["udp"]:
    out["udp"][str(p)] = bind(p, socket.SOCK_DGRAM)
print(json.dumps(out), flush=True)
while socks:
    left = deadline - time.monotonic()
    if left <= 0:
        break
    ready = select.select(list(socks), [], [], min(left, 1.0))[0]
    for s in ready:
        try:
            if socks[s] == socket.SOCK_STREAM:
                s.accept()[0].close()
            else:
                data, peer = s.recvfrom(512)
                s.sendto(data, peer)
        except OSError:
            pass
"""


# Starts LISTEN_PY in the background under timeout(1), waits until it has bound its
# ports, prints "started PID" (timeout's) and its JSON line, and returns: the exec ends,
# the listener lives on (its output goes to a file removed at once).
LISTEN_SH = r"""
command -v python3 >/dev/null 2>&1 || { echo "no-python3"; exit 0; }
py=$1; life=$2; shift 2
f=$(mktemp) || exit 1
timeout -k 1 "$life" python3 -c "$py" "$life" "$@" >"$f" 2>&1 </dev/null &
t=$!
i=0
while [ "$i" -lt 100 ] && ! grep -q '^{' "$f" && kill -0 "$t" 2>/dev/null; do
  sleep 0.1; i=$((i + 1))
done
echo "started $t"
cat "$f"
rm -f "$f"
"""


STOP_SH = 'kill "$@" 2>/dev/null; exit 0'


# Runs on the node: probe every target at once, print one JSON object. A target is
# HOST:PORT (TCP connect) or HOST:PORT/udp (send a token, wait for the listener's echo;
# a connected UDP socket reports an ICMP port unreachable as "refused").
PROBE_PY = r"""
import errno, json, os, socket, sys, time
from concurrent.futures import ThreadPoolExecutor
t = float(sys.argv[1])
def udp(s, host, port):
    s.connect((host, port))
    token = os.urandom(8).hex().encode()
    end = time.monotonic() + t
    while time.monotonic() < end:
        s.send(token)
        s.settimeout(max(min(t / 3, end - time.monotonic()), 0.01))
        try:
            if s.recv(512) == token:
                return "open"
        except socket.timeout:
            pass
    return "timeout"
def probe(target):
    is_udp = target.endswith("/udp")
    host, port = target[:-4 if is_udp else None].rsplit(":", 1)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM if is_udp else socket.SOCK_STREAM)
    s.settimeout(t)
    try:
        if is_udp:
            r = udp(s, host, int(port))
        else:
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
with ThreadPoolExecutor(max(1, min(256, len(sys.argv) - 2))) as ex:
    print(json.dumps(dict(ex.map(probe, sys.argv[2:]))))
"""


# Fallback when the node has no python3: bash's /dev/tcp, one TCP target at a time.
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


# Only a connect proves a path: with a listener behind the port, "refused" is a REJECT.
REACHABLE = {"open"}

NO_PYTHON = "no python3"

# What each blocked result means, for the report.
MEANING = {
    "refused": "refused: a REJECT rule or a TCP reset",
    "timeout": "timeout: dropped",
    "EHOSTUNREACH": "EHOSTUNREACH: no route, or a REJECT with host-prohibited",
    "ENETUNREACH": "ENETUNREACH: no route to the network",
}


@dataclass(frozen=True)
class Listener:
    """What a node's listener bound: port -> "bound" | "in use" | errno name; or why
    none runs (``error``)."""

    node: str
    address: str
    tcp: dict[int, str] = field(default_factory=dict)
    udp: dict[int, str] = field(default_factory=dict)
    pids: tuple[int, ...] = ()
    error: str = ""

    @property
    def python(self) -> bool:
        """Whether the node has python3 (else it probes with bash, TCP only)."""
        return self.error != NO_PYTHON

    def serves(self, port: int, proto: str = "tcp") -> bool:
        """Something answers on the port: our listener, or what already uses it."""
        return (self.tcp if proto == "tcp" else self.udp).get(port) in ("bound", "in use")

    def why_not(self, port: int, proto: str = "tcp") -> str:
        if self.error:
            return f"no listener on {self.node} ({self.error})"
        state = (self.tcp if proto == "tcp" else self.udp).get(port, "not asked")
        return f"the listener on {self.node} could not bind {port}/{proto} ({state})"


def parse_listener(node: str, address: str, stdout: str) -> Listener:
    """Read LISTEN_SH's output: "started PID" and LISTEN_PY's JSON line."""
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    if lines[:1] == ["no-python3"]:
        return Listener(node, address, error=NO_PYTHON)
    pids = [int(ln.split()[1]) for ln in lines if ln.startswith("started ")
            and ln.split()[1:2] and ln.split()[1].isdigit()]
    report = next((ln for ln in lines if ln.startswith("{")), None)
    if report is None:
        rest = [ln for ln in lines if not ln.startswith("started ")]
        why = rest[-1] if rest else "the listener printed nothing"
        return Listener(node, address, pids=tuple(pids), error=f"did not start: {why}")
    data = json.loads(report)
    return Listener(node, address,
                    tcp={int(p): str(s) for p, s in data.get("tcp", {}).items()},
                    udp={int(p): str(s) for p, s in data.get("udp", {}).items()},
                    pids=(*pids, int(data["pid"])))


def start_listener(node: Node, spec: PlanNode, *, lifetime: float = LISTEN_LIFETIME,
                   udp: Sequence[int] = (VXLAN_PORT,)) -> Listener:
    """Bind, on the node's plan address, the ports the other nodes must reach on it."""
    argv = ["sh", "-c", LISTEN_SH, "listen", LISTEN_PY, str(int(lifetime)), spec.address,
            *(str(p) for p in ports_for(spec)), "--udp", *(str(p) for p in udp)]
    res = node.run(argv, check=False, timeout=LISTEN_READY_TIMEOUT)
    if not res.ok:
        return Listener(spec.name, spec.address,
                        error=f"did not start: {last_line(res.stderr) or f'exit {res.returncode}'}")
    return parse_listener(spec.name, spec.address, res.stdout)


def stop_listener(node: Node, listener: Listener) -> None:
    if listener.pids:
        node.run(["sh", "-c", STOP_SH, "stop", *(str(p) for p in listener.pids)], check=False,
                 timeout=30)


@contextmanager
def listening(nodes: Mapping[str, Node], specs: Sequence[PlanNode], *, parallel: int = 8,
              lifetime: float = LISTEN_LIFETIME) -> Iterator[dict[str, Listener]]:
    """A listener on every node at once (one exec each), stopped on the way out even when
    the body fails; a node that cannot start one is reported through ``Listener.error``."""

    def start(spec: PlanNode) -> Listener:
        try:
            return start_listener(nodes[spec.name], spec, lifetime=lifetime)
        except AirgapError as exc:
            return Listener(spec.name, spec.address, error=f"did not start: {exc.brief}")

    def stop(listener: Listener) -> None:
        with suppress(AirgapError):  # else it ends at its own deadline
            stop_listener(nodes[listener.node], listener)

    started = fan_out(start, specs, limit=parallel, name="listen")
    try:
        yield {ls.node: ls for ls in started}
    finally:
        fan_out(stop, started, limit=parallel, name="unlisten")


def probe_ports(
    node: Node, targets: Sequence[str], timeout: float = PROBE_TIMEOUT, *,
    python: bool | None = None,
) -> dict[str, str]:
    """HOST:PORT[/udp] -> open | refused | timeout | EHOSTUNREACH | ... seen from the node,
    in one exec. Without python3 (``python=False``) bash probes the TCP targets only."""
    if not targets:
        return {}
    if python is None:
        python = has_command(node, "python3")
    if python:
        limit = timeout * (2 + len(targets) // 256) + 30
        res = node.run(["python3", "-c", PROBE_PY, str(timeout), *targets], timeout=limit)
        parsed: dict[str, str] = json.loads(res.stdout)
        return parsed
    tcp = [t for t in targets if not t.endswith("/udp")]
    res = node.run(["bash", "-c", PROBE_BASH, "probe", str(int(timeout) or 1), *tcp],
                   timeout=timeout * (1 + len(tcp)) + 30)
    out = {}
    for line in res.stdout.splitlines():
        target, _, result = line.partition(" ")
        out[target] = result
    return out


def check_route(node: Node, plan: Plan, spec: PlanNode) -> list[Check]:

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




def port_targets(plan: Plan, spec: PlanNode, *, udp: bool = True) -> list[str]:
    """What ``spec`` probes: every other node's TCP ports, and its 8472/udp."""
    out: list[str] = []
    for o in plan.nodes:
        if o.name != spec.name:
            out += [f"{o.address}:{p}" for p in ports_for(o)]
            if udp:
                out.append(f"{o.address}:{VXLAN_PORT}/udp")
    return out


def check_ports(node: Node, plan: Plan, spec: PlanNode, listeners: Mapping[str, Listener],
                *, timeout: float = PROBE_TIMEOUT) -> list[Check]:
    """From this node to every other, on the ports each must reach, in one exec.

    ``listeners``: what each node's listener bound (``listening``); a node missing from
    it runs no listener (not in this run), so a refused port there proves nothing."""
    others = [n for n in plan.nodes if n.name != spec.name]
    if not others:
        return []
    mine = listeners.get(spec.name)
    python = mine.python if mine is not None else has_command(node, "python3")
    results = probe_ports(node, port_targets(plan, spec, udp=python), timeout, python=python)
    out: list[Check] = []
    for o in others:
        ls = listeners.get(o.name) or Listener(o.name, o.address, error="not in this run")
        out.append(_tcp_check(spec, o, ls, results))
        out.append(_udp_check(spec, o, ls, results, python))
    return out


def _tcp_check(spec: PlanNode, o: PlanNode, ls: Listener, results: Mapping[str, str]) -> Check:
    name = f"ports -> {o.name}"
    blocked: list[tuple[int, str]] = []
    unchecked: list[tuple[int, str]] = []
    in_use: list[int] = []
    for p in ports_for(o):
        r = results.get(f"{o.address}:{p}", "not probed")
        if r == "open":
            if ls.tcp.get(p) == "in use":
                in_use.append(p)
        elif r == "not probed" or (r == "refused" and not ls.serves(p)):
            unchecked.append((p, r))
        else:
            blocked.append((p, r))
    if blocked:
        what = ", ".join(f"{p} ({MEANING.get(r, r)})" for p, r in blocked)
        fix = (f"allow TCP {','.join(str(p) for p, _ in blocked)} from {spec.address} "
               f"to {o.address} (firewall, security group, routes)")
        if any(r == "refused" for _, r in blocked):
            fix += f"; the listener on {o.name} was up, so a REJECT rule or a reset answered"
        detail = f"blocked: {what}"
        if unchecked:
            detail += f"; not checked: {' '.join(str(p) for p, _ in unchecked)}"
        return Check(name, CheckStatus.fail, detail, fix)
    if unchecked:
        why = sorted({ls.why_not(p) for p, _ in unchecked})
        return Check(name, CheckStatus.warn,
                     f"not checked: {' '.join(str(p) for p, _ in unchecked)} "
                     f"({'; '.join(why)}): a refused connect cannot be told from a REJECT rule",
                     f"rerun preflight with python3 on {o.name} and the ports free, or allow "
                     f"TCP {','.join(str(p) for p, _ in unchecked)} from {spec.address} to "
                     f"{o.address} and check by hand")
    detail = f"{len(ports_for(o))} TCP ports open (a listener on {o.name})"
    if in_use:
        detail += (f"; in use there, served by what already runs: "
                   f"{' '.join(str(p) for p in in_use)}")
    return Check(name, CheckStatus.ok, detail)


def _udp_check(spec: PlanNode, o: PlanNode, ls: Listener, results: Mapping[str, str],
               python: bool) -> Check:
    name = f"{VXLAN_PORT}/udp -> {o.name}"
    fix = f"allow UDP {VXLAN_PORT} (VXLAN) from {spec.address} to {o.address}"
    if not python:
        return Check(name, CheckStatus.warn,
                     "not checked: no python3 on this node (bash probes TCP only)", fix)
    state = ls.udp.get(VXLAN_PORT)
    r = results.get(f"{o.address}:{VXLAN_PORT}/udp", "not probed")
    if r == "open":
        return Check(name, CheckStatus.ok, f"echoed by the listener on {o.name}")
    if state == "in use":
        return Check(name, CheckStatus.warn,
                     f"not checked: {VXLAN_PORT}/udp already in use on {o.name} (a VXLAN "
                     f"device: k8s already running?), nothing echoes ({r})", fix)
    if state != "bound" or r == "not probed":
        return Check(name, CheckStatus.warn,
                     f"not checked: {ls.why_not(VXLAN_PORT, 'udp')}", fix)
    meaning = {"refused": "ICMP port unreachable: a REJECT rule",
               "timeout": "no echo: dropped"}.get(r, r)
    return Check(name, CheckStatus.fail, f"blocked: {meaning}", fix)
