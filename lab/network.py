"""The lab's networks: its address slot, its two bridges, and what guards them.

Network safety: the lab's /23 is blackholed and the lab's firewall rules are in place
(lab/host.py does both in the root namespace) before any bridge exists, and they are
removed last. The bridges are never NAT'd or routed, except the services bridge in
internet mode (the proxy's way out); the air-gapped bridge hands out no router.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from airgap import process
from airgap.errors import AirgapError
from lab import host
from lab.topology import LabSpec, Upstream

SLOTS = 120


def bridge_config(spec: LabSpec, bridge: str) -> dict[str, str]:
    airgap = bridge == spec.airgap_bridge
    subnet = spec.airgap_subnet if airgap else spec.services_subnet
    gw = spec.airgap_gateway if airgap else spec.services_gateway
    internet = spec.upstream is Upstream.internet and not airgap
    # The air-gapped bridge hands out no router: nodes have no default route until
    # deploy adds the placeholder route, as on a real air-gapped site.
    # In internet mode the services bridge resolves real names (for the proxy).
    dnsmasq = "no-resolv\ndhcp-option=3" if airgap else ("" if internet else "no-resolv")
    return {
        "ipv4.address": f"{gw}/{subnet.prefixlen}",
        "ipv4.nat": "true" if internet else "false",
        "ipv4.routing": "true" if internet else "false",
        "ipv4.firewall": "false",
        "ipv4.dhcp": "true",
        "ipv6.address": "none",
        "dns.domain": f"{spec.name}.{'airgap' if airgap else 'services'}",
        "raw.dnsmasq": dnsmasq,
    }


def network_blocks(c: Any) -> dict[str, ipaddress.IPv4Network]:
    """Managed networks' IPv4 subnets, by network name."""
    out = {}
    for net in c.networks.all():
        addr = (getattr(net, "config", None) or {}).get("ipv4.address", "")
        if addr and addr != "none":
            try:
                out[str(net.name)] = ipaddress.IPv4Interface(addr).network
            except ValueError:
                continue
    return out


def check_slot_free(spec: LabSpec) -> None:
    """Refuse a slot whose addresses another LXD network already uses."""
    for name, net in network_blocks(host.client()).items():
        if name not in spec.bridges and net.overlaps(spec.block):
            raise AirgapError(
                f"Slot {spec.slot} ({spec.block}) overlaps LXD network {name} ({net})",
                resolution=f"Choose another --slot (free: {free_slot(spec.slot)}).",
            )


def free_slot(preferred: int = 0) -> int:
    """The first slot from preferred upwards that no LXD network or blackhole uses."""
    used = list(network_blocks(host.client()).values())
    routes = process.run(["ip", "-4", "route", "show", "type", "blackhole"], check=False).stdout
    for line in routes.splitlines():
        try:
            used.append(ipaddress.IPv4Network(line.split()[1]))
        except (IndexError, ValueError):
            continue
    for slot in [*range(preferred, SLOTS), *range(0, preferred)]:
        block = LabSpec(slot=slot).block
        if not any(block.overlaps(u) for u in used):
            return int(slot)
    raise AirgapError("No free lab slot in 10.213.0.0/16",
                      resolution="Bring down labs you no longer need (invoke lab.down).")


def guard(spec: LabSpec) -> None:
    """The blackhole route for the lab's /23 and the lab's firewall rules (before bridges)."""
    host.add_blackhole(spec)
    host.add_rules(spec)


def unguard(spec: LabSpec) -> list[str]:
    """Remove the firewall rules, then the blackhole route (after the bridges)."""
    removed = []
    n = host.remove_rules(spec)
    if n:
        removed.append(f"{n} firewall rule(s)")
    if host.remove_blackhole(spec):
        removed.append(f"blackhole route {spec.block}")
    return removed


def ensure_networks(spec: LabSpec) -> list[str]:
    c = host.client()
    made = []
    for bridge in spec.bridges:
        if c.networks.exists(bridge):
            continue
        c.networks.create(bridge, description=f"k8s-airgap lab {spec.name}", type="bridge",
                          config=bridge_config(spec, bridge))
        made.append(bridge)
    return made


def remove_networks(c: Any, spec: LabSpec) -> list[str]:
    removed = []
    for bridge in spec.bridges:
        if c.networks.exists(bridge):
            c.networks.get(bridge).delete()
            removed.append(f"network {bridge}")
    return removed


def inside_netns(spec: LabSpec) -> str:
    """The offline-mirror mode's inside admin host: a namespace on the air-gapped bridge."""
    return f"kag-{spec.name}-in"


def inside_links(spec: LabSpec) -> tuple[str, str]:
    """Its veth pair: the end on the bridge, the end in the namespace (15 chars at most)."""
    return f"kag{spec.name}h", f"kag{spec.name}n"


def remove_inside_host(spec: LabSpec) -> list[str]:
    """Delete the namespace and its veth if they exist; what was removed."""
    removed = []
    if process.run(["ip", "netns", "delete", inside_netns(spec)], check=False, timeout=30
                   ).returncode == 0:
        removed.append(f"netns {inside_netns(spec)}")
    if process.run(["ip", "link", "delete", inside_links(spec)[0]], check=False, timeout=30
                   ).returncode == 0:
        removed.append(f"link {inside_links(spec)[0]}")
    return removed
