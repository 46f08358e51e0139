"""Which machine answers for each plan node: its plan address is its own, and no two plan
names point at one machine.

A typo in ``nodes[].address`` (or another machine's address) passes every port check
that node's peers make to the machine that does hold it, and fails only at join. So
each node lists its own addresses (``ip -o addr show``) and must hold its plan address.
The hostname need not be the plan name: deploy bootstraps and joins with ``--name
<plan name>``, and the join token is made for that name. Across nodes, two plan names
answering with the same machine-id, or the same hostname and addresses, are one machine.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from airgap.nodes import Node
from airgap.plan import Node as PlanNode
from airgap.preflight.report import Check, CheckStatus, last_line

IDENTITY_SCRIPT = (
    'echo "hostname $(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"; '
    'echo "machine-id $(cat /etc/machine-id 2>/dev/null)"; '
    "exec ip -o addr show"
)

# `ip -o addr show`: "4: eth0    inet 192.0.2.2/24 brd ... scope global eth0\ ..."
_IP_ADDR_RE = re.compile(r"^\d+:\s+(?P<iface>[^\s@]+)(?:@\S+)?\s+inet6?\s+(?P<addr>[^\s/]+)")


@dataclass(frozen=True)
class Identity:
    """What a node says it is."""

    hostname: str
    machine_id: str
    addresses: tuple[tuple[str, str], ...]  # (interface, address), as `ip` lists them

    @property
    def own(self) -> frozenset[str]:
        """Addresses other than loopback and link-local: what tells machines apart."""
        return frozenset(a for _, a in self.addresses
                         if not (ipaddress.ip_address(a).is_loopback
                                 or ipaddress.ip_address(a).is_link_local))


def parse_ip_addr(text: str) -> list[tuple[str, str]]:
    """(interface, address) of every IPv4 and IPv6 address in ``ip -o addr show``."""
    out = []
    for line in text.splitlines():
        m = _IP_ADDR_RE.match(line.strip())
        if m:
            out.append((m["iface"], str(ipaddress.ip_address(m["addr"]))))
    return out


def parse_identity(text: str) -> Identity:
    hostname = machine_id = ""
    for line in text.splitlines():
        if line.startswith("hostname "):
            hostname = line.split(" ", 1)[1].strip()
        elif line.startswith("machine-id "):
            machine_id = line.split(" ", 1)[1].strip()
    return Identity(hostname, machine_id, tuple(parse_ip_addr(text)))


def check_identity(node: Node, spec: PlanNode) -> tuple[list[Check], Identity | None]:
    """The plan address on the node, and its hostname against the plan name (one exec)."""
    res = node.run(["sh", "-c", IDENTITY_SCRIPT], check=False)
    ident = parse_identity(res.stdout)
    if not res.ok or not ident.addresses:
        why = last_line(res.stderr) or "no addresses listed"
        return [Check("plan address", CheckStatus.fail,
                      f"cannot list the node's addresses (`ip -o addr show`): {why}",
                      "install iproute2 on the node")], None
    want = str(ipaddress.ip_address(spec.address))
    where = [iface for iface, addr in ident.addresses if addr == want]
    if where:
        out = [Check("plan address", CheckStatus.ok, f"{want} on {where[0]}")]
    else:
        has = ", ".join(f"{a} ({i})" for i, a in ident.addresses
                        if a in ident.own) or "no address but loopback and link-local"
        out = [Check("plan address", CheckStatus.fail,
                     f"{want} is not on this machine; it has {has}",
                     f"correct nodes[{spec.name}].address in the plan (a typo, or another "
                     "machine's address?), or check that its transport reaches the machine "
                     "meant")]
    if ident.hostname == spec.name:
        out.append(Check("hostname", CheckStatus.ok, f"{ident.hostname} (the plan name)"))
    else:
        out.append(Check("hostname", CheckStatus.ok,
                         f"{ident.hostname or '(none)'}; deploy joins it as {spec.name} "
                         f"(--name {spec.name}: the join token is made for that name)"))
    return out, ident


def check_one_machine_each(seen: Mapping[str, Identity]) -> dict[str, Check]:
    """Across nodes: no two plan names answered by one machine (same machine-id, or the
    same hostname and addresses). A node without an answer is left out."""
    if len(seen) < 2:
        return {}
    out: dict[str, Check] = {}
    for name, ident in seen.items():
        same_id = [o for o, i in seen.items()
                   if o != name and ident.machine_id and i.machine_id == ident.machine_id]
        same_host = [o for o, i in seen.items()
                     if o != name and i.hostname == ident.hostname and i.own == ident.own]
        if same_id or same_host:
            twins = sorted(set(same_id) | set(same_host))
            how = (f"the same machine-id {ident.machine_id[:12]}" if same_id
                   else f"the same hostname {ident.hostname} and addresses")
            out[name] = Check(
                "one machine", CheckStatus.fail,
                f"{name} and {', '.join(twins)} answer with {how}: the plan points two "
                "names at one machine",
                "give each plan node its own machine (address and transport); distinct "
                "machines cloned from one image need their own machine-id: "
                "`rm /etc/machine-id && systemd-machine-id-setup`, then reboot")
        else:
            mid = f"machine-id {ident.machine_id[:12]}" if ident.machine_id else "no machine-id"
            out[name] = Check("one machine", CheckStatus.ok,
                              f"{mid}, unlike the other {len(seen) - 1} node(s)")
    return out
