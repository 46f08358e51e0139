"""The node's network: its default route and the k8s ports between nodes.

Port checks are TCP connects from node to node. Before install nothing listens, so a
refused connection proves the path (host up, port not filtered); a time-out or
"no route"/"unreachable" means a filter or routing problem. A firewall that rejects
with a TCP reset looks like "refused" and cannot be told apart. VXLAN (8472/udp)
cannot be checked by a connect at all and is reported as not checked.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

from airgap.nodes import Node, has_command, read_text
from airgap.plan import Node as PlanNode
from airgap.plan import Plan, Role
from airgap.preflight.report import Check, CheckStatus
from airgap.render.route import render_route

PORTS_ALL = (6443, 6400, 10250, 4240, 4244)


PORTS_CONTROL_PLANE = (2379, 2380, 9963, 10257, 10259)


PROBE_TIMEOUT = 3.0


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
