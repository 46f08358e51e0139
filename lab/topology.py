"""What a lab is: its name, project, bridges, subnets, roles and addresses.

Pure data, no I/O, so that up, down and status all derive the same names from the
same inputs, and down can find everything up made even when up stopped half-way.

Addresses: lab ``slot`` N owns 10.213.2N.0/23 (inside the default 10.213.0.0/16):
the first /24 is the air-gapped bridge, the second the services bridge. The /23 is
blackholed in the root namespace before the bridges exist; each bridge's connected
/24 is more specific and wins while it exists.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import Enum

from airgap.errors import AirgapError
from airgap.plan.images import DOCKER_HUB, ImageRef, parse_image_ref, registries

LAB_RANGE = ipaddress.IPv4Network("10.213.0.0/16")
PROJECT_PREFIX = "k8s-airgap-"
FIREWALL_TAG = "k8s-airgap-lab"
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")

# The fabricated upstream holds these by default: real names of a few images the k8s
# snap pulls, and one Docker Hub workload; small, so a lab comes up fast.
DEFAULT_LAB_IMAGES = (
    "ghcr.io/canonical/k8s-snap/pause:3.10",
    "ghcr.io/canonical/coredns:1.11.1-ck4",
    "ghcr.io/canonical/metrics-server:0.7.0-ck2",
    "docker.io/library/busybox:1.36",
)

REGISTRY_HTTP_PORT = 5000
REGISTRY_HTTPS_PORT = 5443
PROXY_PORT = 3128
UPSTREAM_PORT = 443
K8S_SNAP_LABEL = "k8s snap (the real snap from the bundle, on VM nodes)"
SNAPD_LABEL = ("real snapd with the lab's stand-in k8s snap (installed by deploy; its "
               "containerd app is the node's containerd, its k8s command a stand-in CLI)")


class InstanceType(str, Enum):
    auto = "auto"
    vm = "vm"
    container = "container"


class Runtime(str, Enum):
    """What the nodes run. snapd (the default): Debian's snapd, into which deploy installs
    the lab's stand-in snaps; k8s-snap: the real k8s snap (Ubuntu VM nodes). (A runtime
    without snapd, Debian's containerd posing as the snap's unit, served until deploy
    could install the stand-in snaps into snapd; nothing needs it now.)"""

    snapd = "snapd"
    k8s_snap = "k8s-snap"


class Upstream(str, Enum):
    simulated = "simulated"
    internet = "internet"


@dataclass(frozen=True)
class Member:
    """One instance of the lab."""

    name: str
    role: str
    airgap: str | None = None
    services: str | None = None

    @property
    def dual_homed(self) -> bool:
        return self.airgap is not None and self.services is not None


def upstream_hosts(images: list[ImageRef]) -> list[str]:
    """Every host name the upstream answers to (Docker Hub under all its names)."""
    hosts: list[str] = []
    for reg in registries(images):
        if reg == DOCKER_HUB:
            hosts += ["docker.io", "registry-1.docker.io", "index.docker.io"]
        else:
            hosts.append(reg)
    return sorted(set(hosts))


@dataclass(frozen=True)
class LabSpec:
    name: str = "lab"
    nodes: int = 2
    slot: int = 0
    instance_type: InstanceType = InstanceType.auto
    upstream: Upstream = Upstream.simulated
    images: tuple[str, ...] = DEFAULT_LAB_IMAGES
    runtime: Runtime = Runtime.snapd
    lab_range: ipaddress.IPv4Network = field(default=LAB_RANGE)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise AirgapError(
                f"Lab name {self.name!r} is not valid",
                resolution="Use 1-6 lowercase letters or digits, starting with a letter "
                "(bridge names derive from it and Linux allows 15 characters).",
            )
        if not 1 <= self.nodes <= 50:
            raise AirgapError(f"--nodes {self.nodes}: choose 1 to 50 nodes",
                              resolution="Pass --nodes N with N from 1 to 50.")
        # The top /20 of the default range belongs to the namespace tests (tests/support).
        max_slot = 2 ** (24 - self.lab_range.prefixlen) // 2 - 1
        if self.lab_range == LAB_RANGE:
            max_slot = 119
        if not 0 <= self.slot <= max_slot:
            raise AirgapError(f"--slot {self.slot}: choose 0 to {max_slot}",
                              resolution=f"Pass --slot N with N from 0 to {max_slot}; each "
                              "lab on this machine needs its own slot.")
        for ref in self.images:
            parse_image_ref(ref)
        if self.real_snap and self.upstream is Upstream.simulated:
            # The simulated upstream serves fabricated images under the real names; the
            # real snap's images.txt names real images that only the real registries hold.
            raise AirgapError(
                "The real k8s snap needs the real upstream registries: its images.txt names "
                "images the simulated upstream does not hold",
                resolution="Use --upstream internet with --k8s-snap.",
            )

    @property
    def real_snap(self) -> bool:
        return self.runtime is Runtime.k8s_snap

    @property
    def runtime_label(self) -> str:
        return K8S_SNAP_LABEL if self.runtime is Runtime.k8s_snap else SNAPD_LABEL

    # Names ---------------------------------------------------------------
    @property
    def project(self) -> str:
        return f"{PROJECT_PREFIX}{self.name}"

    @property
    def airgap_bridge(self) -> str:
        return f"{self.name}-airgap"

    @property
    def services_bridge(self) -> str:
        return f"{self.name}-services"

    @property
    def bridges(self) -> tuple[str, str]:
        return (self.airgap_bridge, self.services_bridge)

    @property
    def firewall_tag(self) -> str:
        return f"{FIREWALL_TAG}:{self.name}"

    # Addresses -----------------------------------------------------------
    @property
    def block(self) -> ipaddress.IPv4Network:
        """The /23 this lab owns (blackholed while the lab exists)."""
        base = int(self.lab_range.network_address) + self.slot * 512
        return ipaddress.IPv4Network((base, 23))

    @property
    def airgap_subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(self.block.network_address), 24))

    @property
    def services_subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(self.block.network_address) + 256, 24))

    def _host(self, net: ipaddress.IPv4Network, index: int) -> str:
        return str(net.network_address + index)

    @property
    def airgap_gateway(self) -> str:
        return self._host(self.airgap_subnet, 1)

    @property
    def services_gateway(self) -> str:
        return self._host(self.services_subnet, 1)

    # Roles ---------------------------------------------------------------
    @property
    def image_refs(self) -> list[ImageRef]:
        return [parse_image_ref(i) for i in self.images]

    @property
    def upstream_hosts(self) -> list[str]:
        return upstream_hosts(self.image_refs)

    @property
    def members(self) -> list[Member]:
        a, s = self.airgap_subnet, self.services_subnet
        out = [
            Member("registry", "registry", self._host(a, 2), self._host(s, 2)),
            Member("proxy", "proxy", self._host(a, 3), self._host(s, 3)),
            Member("bastion", "bastion", None, self._host(s, 4)),
        ]
        if self.upstream is Upstream.simulated:
            out.append(Member("upstream", "upstream", None, self._host(s, 5)))
        else:
            # In internet mode the host is the connected side: no bastion instance.
            out = [m for m in out if m.role != "bastion"]
        out += [Member(f"node-{i}", "node", self._host(a, 10 + i), None)
                for i in range(1, self.nodes + 1)]
        return out

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise AirgapError(
            f"Lab {self.name!r} has no instance {name!r}",
            resolution=f"Use one of: {', '.join(m.name for m in self.members)}",
        )

    @property
    def node_members(self) -> list[Member]:
        return [m for m in self.members if m.role == "node"]
