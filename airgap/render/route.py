"""The placeholder default route, now and after a reboot.

Kubernetes components pick their interface from the default route; an air-gapped
network often has none. The seed says to add one with ``ip route add default dev
eth0`` and to make it survive a reboot, without saying how. The runtime command here
is ``ip route replace`` (idempotent, so re-running deploy is safe); callers run it only
when ``check`` shows no default route, so a real gateway is never replaced. The
persistent form is chosen by ``network.route_persistence``:

- ``netplan``: /etc/netplan/90-airgap-default-route.yaml, merged by netplan into the
  interface's definition (Ubuntu servers); netplan turns it into the same networkd
  [Route] as below. Takes effect at the next boot or ``netplan apply``.
- ``networkd``: a drop-in /etc/systemd/network/<networkd_file>.d/90-airgap-default-route.conf
  for the .network file that already configures the interface (a second .network
  file would never match: networkd uses the first file that matches a link).
- ``none``: no file (the nodes already have a default route).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from airgap.plan import Node, Plan, RoutePersistence
from airgap.render import RenderedFile
from airgap.render.systemd import unit_file

NETPLAN_FILE = "/etc/netplan/90-airgap-default-route.yaml"
NETWORKD_DIR = "/etc/systemd/network"
DROPIN_NAME = "90-airgap-default-route.conf"


@dataclass(frozen=True)
class RouteFiles:
    command: list[str]
    files: list[RenderedFile] = field(default_factory=list)
    # Prints the current default route(s); empty output means the placeholder is needed.
    check: list[str] = field(default_factory=lambda: ["ip", "-4", "route", "show", "default"])


def route_command(interface: str) -> list[str]:
    return ["ip", "route", "replace", "default", "dev", interface]


def netplan_route(interface: str) -> str:
    doc = {
        "network": {
            "version": 2,
            # "to: default" without "via" crashes netplan 0.106 (unknown address family).
            "ethernets": {interface: {"routes": [{"to": "0.0.0.0/0", "scope": "link"}]}},
        }
    }
    head = "# Placeholder default route for Kubernetes, written by k8s-airgap.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def networkd_route() -> str:
    head = "# Placeholder default route for Kubernetes, written by k8s-airgap.\n"
    return unit_file([("Route", [("Destination", "0.0.0.0/0"), ("Scope", "link")])], head)


def render_route(plan: Plan, node: Node) -> RouteFiles:
    """The runtime command and the file that keeps the route across reboots."""
    iface = plan.network.default_route_interface
    files: list[RenderedFile] = []
    persistence = plan.network.route_persistence
    if persistence is RoutePersistence.netplan:
        # netplan warns about (and future versions refuse) world-readable files.
        files.append(RenderedFile(NETPLAN_FILE, netplan_route(iface).encode(), 0o600))
    elif persistence is RoutePersistence.networkd:
        unit = plan.network.networkd_file
        assert unit is not None  # enforced by NetworkSettings
        files.append(
            RenderedFile(f"{NETWORKD_DIR}/{unit}.d/{DROPIN_NAME}", networkd_route().encode(), 0o644)
        )
    return RouteFiles(command=route_command(iface), files=files)
