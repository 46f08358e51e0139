"""lab up / down / status: one LXD project per lab, two bridges, the roles, a plan.

Order matters for network safety: the lab's /23 is blackholed and the lab's firewall
rules are in place before any bridge exists, and they go last on down. Up is
idempotent (it creates only what is missing and re-applies role configuration); down
derives every name from the lab's spec, so it also cleans a half-built lab.

With ``runtime: k8s-snap`` the nodes are VMs (the k8s snap runs containers, which an
LXD container here cannot) launched from an Ubuntu image pulled from ``--image-server``
(a simplestreams server; Ubuntu images ship snapd), with no stand-in; the other roles
stay containers from the local base image. Everything that differs between containers
and VMs (agent wait, NIC naming, Secure Boot, sizing) is decided here, with the
constants below. Their NICs sit on the same bridges, so the lab's rules apply unchanged.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airgap import process
from airgap.config import DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from lab import host
from lab.ca import LabCA
from lab.image import BuiltImage, build_image
from lab.lxd import LXDNode, wait_address, wait_system_running, wait_until
from lab.roles import RoleContext
from lab.topology import (
    PROXY_PORT,
    REGISTRY_HTTP_PORT,
    REGISTRY_HTTPS_PORT,
    UPSTREAM_PORT,
    InstanceType,
    LabSpec,
    Member,
    Runtime,
    Upstream,
)

log = logging.getLogger(__name__)

BOOT_TIMEOUT = 120.0
ADDRESS_TIMEOUT = 60.0
AGENT_TIMEOUT = 60.0

# Real-snap nodes (VMs). k8s wants 2 CPUs and a few GiB per node.
VM_NODE_CPUS = "2"
VM_NODE_MEMORY = "4GiB"
# Ubuntu cloud images booted by LXD's firmware: Secure Boot off (LXD's own advice for
# images whose shim/kernel is not enrolled in its OVMF vars; harmless for the rest).
VM_SECUREBOOT = "false"
VM_NODE_IMAGE = "24.04"  # the alias on the image server
VM_IMAGE_PROTOCOL = "simplestreams"
# The lxd-agent starts late in a VM (firmware, kernel, cloud-init): exec fails until then.
VM_AGENT_TIMEOUT = 300.0
VM_BOOT_TIMEOUT = 600.0
VM_SEED_TIMEOUT = 600.0
# A VM's first NIC: LXD's virtio-net on PCI slot 5 (the NIC `name` key is container-only).
VM_NODE_INTERFACE = "enp5s0"
Progress = Callable[[str], None]


def state_root() -> Path:
    return Path(os.environ.get("K8S_AIRGAP_LAB_DIR", ".lab")).absolute()


def state_dir(name: str, root: Path | None = None) -> Path:
    return (root or state_root()) / name


@dataclass
class LabState:
    """lab.json: what the lab is, for status, down and the other tasks."""

    name: str
    slot: int
    project: str
    bridges: dict[str, str]
    subnets: dict[str, str]
    instance_type: str
    instance_type_reason: str
    upstream: str
    image_alias: str
    stand_in: bool
    runtime: str
    ca_file: str
    plan_file: str
    members: list[dict[str, Any]]
    images: list[str]
    upstream_content: str
    registry: dict[str, str] = field(default_factory=dict)
    proxy: str = ""
    public_ca_file: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    runtime_kind: str = Runtime.stand_in.value
    node_instance_type: str = ""

    def write(self, directory: Path) -> Path:
        return write_atomic(directory / "lab.json", json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> LabState | None:
        try:
            return cls(**json.loads((directory / "lab.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


def spec_from_state(name: str, root: Path | None = None, slot: int | None = None) -> LabSpec:
    """The spec of an existing lab (its slot from lab.json unless given)."""
    st = LabState.read(state_dir(name, root))
    if slot is None:
        slot = st.slot if st else _slot_from_bridge(name)
    upstream = Upstream(st.upstream) if st else Upstream.simulated
    images = tuple(st.images) if st else LabSpec().images
    nodes = max(1, len([m for m in st.members if m["role"] == "node"])) if st else 1
    runtime = Runtime(st.runtime_kind) if st else Runtime.stand_in
    return LabSpec(name=name, slot=slot, upstream=upstream, images=images, nodes=nodes,
                   runtime=runtime)


def _slot_from_bridge(name: str) -> int:
    """The slot of a lab whose lab.json is gone, from its air-gapped bridge; else 0."""
    if not host.lxd_answers():
        return 0
    net = _network_blocks(host.client()).get(LabSpec(name=name).airgap_bridge)
    if net is None:
        return 0
    offset = int(net.network_address) - int(LabSpec().lab_range.network_address)
    return max(0, offset // 512)


# LXD objects ----------------------------------------------------------------


def choose_instance_type(c: Any, wanted: InstanceType, image_server: str | None
                         ) -> tuple[InstanceType, str]:
    ok, why = host.vm_support(c)
    if wanted is InstanceType.container:
        return InstanceType.container, "containers requested"
    if wanted is InstanceType.vm:
        if not ok:
            raise AirgapError(f"VMs were requested but {why}",
                              resolution="Use --instance-type container (or auto).")
        if image_server is None:
            raise AirgapError(
                "VMs need a VM base image from an image server; the locally built image "
                "is a container rootfs",
                resolution="Pass --image-server URL, or use --instance-type container.")
        return InstanceType.vm, why
    if ok and image_server is not None:
        return InstanceType.vm, f"auto: the server supports VMs ({why})"
    if ok:
        return InstanceType.container, "auto: VMs supported but no image server for a VM image"
    return InstanceType.container, f"auto: containers, because {why}"


@dataclass(frozen=True)
class InstanceTypes:
    """Instance types per role: nodes may differ (VMs for the real snap)."""

    services: InstanceType
    nodes: InstanceType
    reason: str

    def of(self, m: Member) -> InstanceType:
        return self.nodes if m.role == "node" else self.services


def choose_instance_types(c: Any, spec: LabSpec, image_server: str | None) -> InstanceTypes:
    if not spec.real_snap:
        itype, why = choose_instance_type(c, spec.instance_type, image_server)
        return InstanceTypes(itype, itype, why)
    ok, why = host.vm_support(c)
    if not ok:
        raise AirgapError(
            f"--k8s-snap: the real k8s snap needs VM nodes, but {why}",
            resolution="Run on a host whose LXD supports VMs (qemu, /dev/vhost-vsock), or "
            "without --k8s-snap (runtime stand-in).")
    if image_server is None:
        raise AirgapError(
            "--k8s-snap: VM nodes need an Ubuntu VM image from an image server; the locally "
            "built image is a container rootfs",
            resolution="Pass --image-server URL (an LXD simplestreams server, e.g. "
            "https://cloud-images.ubuntu.com/releases) or set K8S_AIRGAP_IMAGE_SERVER.")
    # The service roles need nothing a container lacks, and use the local base image.
    return InstanceTypes(InstanceType.container, InstanceType.vm,
                         f"nodes: VMs for the real k8s snap ({why}); other roles: containers")


def ensure_project(spec: LabSpec) -> bool:
    c = host.client()
    if c.projects.exists(spec.project):
        return False
    c.projects.create(
        spec.project,
        description=f"k8s-airgap lab {spec.name} (delete with invoke lab.down)",
        config={"features.images": "true", "features.profiles": "true",
                "features.storage.volumes": "true"},
    )
    return True


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


def _network_blocks(c: Any) -> dict[str, ipaddress.IPv4Network]:
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
    for name, net in _network_blocks(host.client()).items():
        if name not in spec.bridges and net.overlaps(spec.block):
            raise AirgapError(
                f"Slot {spec.slot} ({spec.block}) overlaps LXD network {name} ({net})",
                resolution=f"Choose another --slot (free: {free_slot(spec.slot)}).",
            )


def free_slot(preferred: int = 0) -> int:
    """The first slot from preferred upwards that no LXD network or blackhole uses."""
    used = list(_network_blocks(host.client()).values())
    routes = process.run(["ip", "-4", "route", "show", "type", "blackhole"], check=False).stdout
    for line in routes.splitlines():
        try:
            used.append(ipaddress.IPv4Network(line.split()[1]))
        except (IndexError, ValueError):
            continue
    for slot in [*range(preferred, 120), *range(0, preferred)]:
        block = LabSpec(slot=slot).block
        if not any(block.overlaps(u) for u in used):
            return int(slot)
    raise AirgapError("No free lab slot in 10.213.0.0/16",
                      resolution="Bring down labs you no longer need (invoke lab.down).")


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


def ensure_image(spec: LabSpec, built: BuiltImage) -> str:
    """The base image in the lab's project (imported from the cached tarball)."""
    c = host.client(spec.project)
    for img in c.images.all():
        if any(a["name"] == built.alias for a in img.aliases):
            return str(img.fingerprint)
    with open(built.tarball, "rb") as fh:
        image = c.images.create(fh, public=False, wait=True)
    image.add_alias(built.alias, "k8s-airgap lab base image")
    return str(image.fingerprint)


def instance_config(spec: LabSpec, m: Member, itype: InstanceType) -> dict[str, Any]:
    devices: dict[str, Any] = {
        "root": {"type": "disk", "path": "/", "pool": host.STORAGE_POOL},
    }
    nics: list[tuple[str, str]] = []
    if m.services:
        nics.append((spec.services_bridge, m.services))
    if m.airgap:
        nics.append((spec.airgap_bridge, m.airgap))
    for i, (bridge, addr) in enumerate(nics):
        devices[f"eth{i}"] = {"type": "nic", "network": bridge, "ipv4.address": addr}
        if itype is InstanceType.container:
            devices[f"eth{i}"]["name"] = f"eth{i}"
    config: dict[str, str] = {"user.k8s-airgap.role": m.role,
                              "user.k8s-airgap.lab": spec.name}
    if itype is InstanceType.container:
        if m.dual_homed or m.role in ("registry", "proxy"):
            config["linux.sysctl.net.ipv4.ip_forward"] = "0"
        if m.role == "node":
            config["security.nesting"] = "true"
    else:
        config["security.secureboot"] = VM_SECUREBOOT
        if m.role == "node":
            config["limits.cpu"] = VM_NODE_CPUS
            config["limits.memory"] = VM_NODE_MEMORY
    return {"name": m.name, "type": "container" if itype is InstanceType.container
            else "virtual-machine", "config": config, "devices": devices}


def instance_source(m: Member, itype: InstanceType, alias: str, image_server: str | None
                    ) -> dict[str, str]:
    """VMs pull the Ubuntu image from the image server (LXD caches it in the project,
    so down removes it); containers use the lab's local base image."""
    if itype is InstanceType.vm:
        if image_server is None:
            raise AirgapError(f"{m.name}: a VM needs --image-server")
        return {"type": "image", "mode": "pull", "server": image_server,
                "protocol": VM_IMAGE_PROTOCOL, "alias": VM_NODE_IMAGE}
    return {"type": "image", "alias": alias}


def _launch(spec: LabSpec, m: Member, itype: InstanceType, alias: str,
            image_server: str | None = None) -> str:
    c = host.client(spec.project)
    if c.instances.exists(m.name):
        inst = c.instances.get(m.name)
        if inst.status != "Running":
            inst.start(wait=True)
            return "started"
        return "running"
    cfg = instance_config(spec, m, itype)
    cfg["source"] = instance_source(m, itype, alias, image_server)
    inst = c.instances.create(cfg, wait=True)
    inst.start(wait=True)
    return "created"


def _ready(spec: LabSpec, m: Member, itype: InstanceType = InstanceType.container) -> None:
    node = LXDNode(m.name, project=spec.project)
    if itype is InstanceType.vm:
        _ready_vm(node, m)
        return
    wait_until(f"the LXD agent/exec on {m.name}",
               lambda: node.run(["true"], check=False, timeout=10).ok, timeout=AGENT_TIMEOUT)
    wait_system_running(node, BOOT_TIMEOUT)
    i = 0
    for addr in (m.services, m.airgap):
        if addr:
            wait_address(node, f"eth{i}", addr, ADDRESS_TIMEOUT)
            i += 1


def _booted(node: LXDNode) -> str | None:
    """systemd's state once booting is over; a VM's "degraded" is reported, not fatal
    (Ubuntu cloud images carry units that fail without their hardware)."""
    r = node.run(["systemctl", "is-system-running"], check=False, timeout=15)
    s = r.stdout.strip()
    return s if s in ("running", "degraded") else None


def _ready_vm(node: LXDNode, m: Member) -> None:
    wait_until(f"the LXD VM agent on {m.name} (lxd-agent starts after firmware and kernel)",
               lambda: node.run(["true"], check=False, timeout=10).ok, timeout=VM_AGENT_TIMEOUT)
    node.run(["cloud-init", "status", "--wait"], check=False, timeout=VM_BOOT_TIMEOUT)
    state = wait_until(f"`systemctl is-system-running` on {m.name}", lambda: _booted(node),
                       timeout=VM_BOOT_TIMEOUT)
    if state == "degraded":
        failed = node.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False)
        log.warning("%s: systemd is degraded after boot: %s", m.name, failed.stdout.strip())
    if m.airgap:
        wait_until(f"{m.name} to get {m.airgap} (DHCP)",
                   lambda: f" {m.airgap}/" in node.run(["ip", "-4", "-o", "addr", "show"],
                                                       check=False, timeout=10).stdout,
                   timeout=ADDRESS_TIMEOUT)


# Roles ------------------------------------------------------------------------


def _htpasswd() -> bytes | None:
    user, pw = os.environ.get("LAB_REGISTRY_USERNAME"), os.environ.get("LAB_REGISTRY_PASSWORD")
    if not user or not pw:
        return None
    from airgap import process

    # -i: the password comes on stdin, never in argv.
    out = process.run(["htpasswd", "-niB", user], input=pw.encode(),
                      resolution="apt-get install apache2-utils (htpasswd)")
    return out.stdout.encode()


def _configure(spec: LabSpec, m: Member, ca: LabCA, public_ca: LabCA,
               htpasswd: bytes | None) -> list[str]:
    from lab.roles import bastion, node, proxy, registry, upstream

    n = LXDNode(m.name, project=spec.project)
    ctx = RoleContext(spec, m, ca, public_ca, htpasswd=htpasswd)
    if m.role == "registry":
        registry.configure(n, ctx)
    elif m.role == "proxy":
        proxy.configure(n, ctx)
    elif m.role == "upstream":
        upstream.configure(n, ctx)
    elif m.role == "bastion":
        return bastion.configure(n, ctx)
    elif m.role == "node":
        node.configure(n, ctx, stand_in=not spec.real_snap)
    return []


def fill_upstream(spec: LabSpec, public_ca: LabCA, work: Path) -> list[dict[str, str]]:
    """Push fabricated images with the real names into the simulated upstream."""
    from lab.ocibuild import Builder, Regctl, push_layout

    upstream = spec.member("upstream")
    target = f"{upstream.services}:{UPSTREAM_PORT}"
    regctl = Regctl(work / "regctl")
    regctl.configure(target, tls="enabled", ca_pem=public_ca.cert_pem)
    layout = work / "layout"
    b = Builder(layout)
    pushed = []
    for i, ref in enumerate(spec.image_refs):
        tag = ref.tag or "latest"
        files = {"/etc/k8s-airgap-lab-image": f"{ref.name}\nfabricated by the lab\n".encode()}
        local = f"img{i}"
        if ref.registry == "docker.io":
            b.image(local, files, image_name=ref.name)
        else:
            b.index(local, files, image_name=ref.name)
        digest = push_layout(layout, f"{target}/{ref.repository}:{tag}", regctl=regctl,
                             tag=local)
        pushed.append({"image": ref.name, "digest": digest})
    return pushed


# Plan ------------------------------------------------------------------------


def plan_document(spec: LabSpec, directory: Path, *, https: bool = True) -> dict[str, Any]:
    reg, prx = spec.member("registry"), spec.member("proxy")
    nodes = spec.node_members
    no_proxy = [str(spec.airgap_subnet), reg.airgap or "", DEFAULT_POD_CIDR,
                DEFAULT_SERVICE_CIDR, "localhost", "127.0.0.1"]
    mirror: dict[str, Any] = (
        {"url": f"https://{reg.airgap}:{REGISTRY_HTTPS_PORT}", "ca_file": "ca.crt"}
        if https else {"url": f"http://{reg.airgap}:{REGISTRY_HTTP_PORT}"}
    )
    if os.environ.get("LAB_REGISTRY_USERNAME"):
        mirror.update(username_env="LAB_REGISTRY_USERNAME", password_env="LAB_REGISTRY_PASSWORD")
    return {
        "access": ["mirror", "proxy", "sideload"],
        "nodes": [
            {"name": m.name, "address": m.airgap,
             "role": "control-plane" if i == 0 else "worker",
             "transport": "lxd", "lxd": {"instance": m.name, "project": spec.project}}
            for i, m in enumerate(nodes)
        ],
        "mirror": mirror,
        "proxy": {"http": f"http://{prx.airgap}:{PROXY_PORT}",
                  "https": f"http://{prx.airgap}:{PROXY_PORT}", "no_proxy": no_proxy},
        "images": {"files": ["images.txt"]},
        "network": node_network(spec),
    }


def node_network(spec: LabSpec) -> dict[str, str]:
    if spec.real_snap:
        # Ubuntu VMs: netplan, and the first NIC is named by its PCI slot.
        return {"default_route_interface": VM_NODE_INTERFACE, "route_persistence": "netplan"}
    # The lab's containers use systemd-networkd (no netplan): the placeholder route
    # is made persistent with a drop-in for eth0's .network file.
    return {"route_persistence": "networkd", "networkd_file": "10-eth0.network"}


def write_plans(spec: LabSpec, directory: Path) -> Path:
    nodes_run = ("the real k8s snap (VMs; deploy installs it from the bundle)"
                 if spec.real_snap else f"the {spec.runtime_label}")
    header = (f"# Written by `invoke lab.up` for lab {spec.name}. Nodes are LXD instances "
              f"running {nodes_run}.\n")
    write_atomic(directory / "images.txt", "\n".join(spec.images) + "\n")
    plan = directory / "airgap.yaml"
    write_atomic(plan, header + yaml.safe_dump(plan_document(spec, directory), sort_keys=False))
    write_atomic(directory / "airgap-http.yaml",
                 header + yaml.safe_dump(plan_document(spec, directory, https=False),
                                         sort_keys=False))
    return plan


# Up / down / status -------------------------------------------------------------


@dataclass
class UpResult:
    state: LabState
    plan: Path
    created: dict[str, str]
    seconds: float


def _parallel(fn: Callable[[Member], Any], members: list[Member]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    errors: list[tuple[str, BaseException]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
        futs = {pool.submit(fn, m): m.name for m in members}
        for fut in concurrent.futures.as_completed(futs):
            name = futs[fut]
            try:
                out[name] = fut.result()
            except BaseException as exc:
                errors.append((name, exc))
    if errors:
        first_name, first = sorted(errors, key=lambda e: e[0])[0]
        if isinstance(first, AirgapError):
            raise first
        raise AirgapError(f"{first_name}: {type(first).__name__}: {first}",
                          details="; ".join(f"{n}: {e}" for n, e in errors[1:]) or None
                          ) from first
    return out


def up(spec: LabSpec, *, root: Path | None = None, image_server: str | None = None,
       progress: Progress | None = None) -> UpResult:
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    c = host.client()
    types = choose_instance_types(c, spec, image_server)
    itype, why = types.services, types.reason
    say(f"instances: {itype.value}s ({why})")
    directory = state_dir(spec.name, root)
    directory.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    built = build_image(progress=say)
    timings["image"] = time.monotonic() - t

    check_slot_free(spec)
    say(f"blackhole route {spec.block} and firewall rules ({spec.firewall_tag})")
    host.add_blackhole(spec)
    host.add_rules(spec)
    ensure_project(spec)
    made = ensure_networks(spec)
    say(f"bridges {', '.join(spec.bridges)}" + (f" (created {', '.join(made)})" if made else ""))

    t = time.monotonic()
    ensure_image(spec, built)
    timings["import"] = time.monotonic() - t
    ca = LabCA.load_or_create(directory, spec.name)
    public_ca = LabCA.load_or_create(directory, spec.name, stem="public-ca",
                                     title="public CA (simulated web PKI)")

    members = spec.members
    t = time.monotonic()
    created = _parallel(lambda m: _launch(spec, m, types.of(m), built.alias, image_server),
                        members)
    _parallel(lambda m: _ready(spec, m, types.of(m)), members)
    timings["launch"] = time.monotonic() - t
    say(f"{len(members)} instances ready")

    t = time.monotonic()
    htpasswd = _htpasswd()
    missing = _parallel(lambda m: _configure(spec, m, ca, public_ca, htpasswd), members)
    timings["roles"] = time.monotonic() - t
    tools_missing = sorted({tool for v in missing.values() for tool in v})
    if tools_missing:
        say(f"bastion: {', '.join(tools_missing)} not installed on this machine (invoke tools)")

    content = "none (internet mode: the real registries)"
    if spec.upstream is Upstream.simulated:
        t = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="k8s-airgap-upstream-") as work:
            pushed = fill_upstream(spec, public_ca, Path(work))
        timings["upstream"] = time.monotonic() - t
        content = (f"fabricated stand-in images with the real names ({len(pushed)}), "
                   "not the real upstream content")
        say(f"simulated upstream: {len(pushed)} images pushed")

    plan = write_plans(spec, directory)
    reg = spec.member("registry")
    prx = spec.member("proxy")
    state = LabState(
        name=spec.name, slot=spec.slot, project=spec.project,
        bridges={"airgap": spec.airgap_bridge, "services": spec.services_bridge},
        subnets={"airgap": str(spec.airgap_subnet), "services": str(spec.services_subnet),
                 "blackhole": str(spec.block)},
        instance_type=itype.value, instance_type_reason=why, upstream=spec.upstream.value,
        image_alias=built.alias, stand_in=not spec.real_snap, runtime=spec.runtime_label,
        runtime_kind=spec.runtime.value, node_instance_type=types.nodes.value,
        ca_file=str(ca.cert_file), public_ca_file=str(public_ca.cert_file),
        plan_file=str(plan),
        members=[asdict(m) for m in members], images=list(spec.images),
        upstream_content=content,
        registry={"http": f"http://{reg.airgap}:{REGISTRY_HTTP_PORT}",
                  "https": f"https://{reg.airgap}:{REGISTRY_HTTPS_PORT}",
                  "services_http": f"http://{reg.services}:{REGISTRY_HTTP_PORT}",
                  "services_https": f"https://{reg.services}:{REGISTRY_HTTPS_PORT}"},
        proxy=f"http://{prx.airgap}:{PROXY_PORT}",
        timings={k: round(v, 2) for k, v in timings.items()},
    )
    state.write(directory)
    return UpResult(state, plan, {k: str(v) for k, v in created.items()},
                    time.monotonic() - t0)


@dataclass
class DownResult:
    removed: list[str]
    seconds: float


def down(spec: LabSpec, *, root: Path | None = None, progress: Progress | None = None
         ) -> DownResult:
    """Remove everything up made, whatever state the lab is in."""
    from pylxd.exceptions import NotFound

    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    removed: list[str] = []
    if host.lxd_answers():
        c = host.client()
        if c.projects.exists(spec.project):
            pc = host.client(spec.project)
            insts = pc.instances.all()

            def drop(inst: Any) -> None:
                if inst.status != "Stopped":
                    inst.stop(force=True, wait=True)
                inst.delete(wait=True)

            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(insts))) as pool:
                list(pool.map(drop, insts))
            removed += [f"instance {instance_name(i)}" for i in insts]
            for img in pc.images.all():
                img.delete(wait=True)
                removed.append(f"image {img.fingerprint[:12]}")
            for vol in _custom_volumes(pc):
                vol.delete()
                removed.append(f"volume {vol.name}")
            for prof in pc.profiles.all():
                if prof.name != "default":
                    prof.delete()
            try:
                c.projects.get(spec.project).delete()
                removed.append(f"project {spec.project}")
            except NotFound:
                pass
        for bridge in spec.bridges:
            if c.networks.exists(bridge):
                c.networks.get(bridge).delete()
                removed.append(f"network {bridge}")
    n = host.remove_rules(spec)
    if n:
        removed.append(f"{n} firewall rule(s)")
    if host.remove_blackhole(spec):
        removed.append(f"blackhole route {spec.block}")
    directory = state_dir(spec.name, root)
    for f in ("lab.json",):
        (directory / f).unlink(missing_ok=True)
    say(", ".join(removed) or "nothing to remove")
    return DownResult(removed, time.monotonic() - t0)


def instance_name(inst: Any) -> str:
    """pylxd 2.4 leaves "?project=..." on names listed in a non-default project."""
    return str(inst.name).split("?", 1)[0]


def _custom_volumes(pc: Any) -> list[Any]:
    try:
        pool = pc.storage_pools.get(host.STORAGE_POOL)
        return [v for v in pool.volumes.all() if v.type == "custom"]
    except Exception:
        return []


@dataclass
class MemberStatus:
    name: str
    role: str
    status: str
    addresses: str
    services: str


ROLE_UNITS = {
    "registry": ["lab-registry-http", "lab-registry-https"],
    "upstream": ["lab-upstream"],
    "proxy": ["squid"],
    "node": ["snap.k8s.containerd"],
    "bastion": [],
}


def status(spec: LabSpec, *, root: Path | None = None) -> tuple[LabState | None,
                                                                 list[MemberStatus]]:
    st = LabState.read(state_dir(spec.name, root))
    c = host.client()
    rows: list[MemberStatus] = []
    if not c.projects.exists(spec.project):
        return st, rows
    pc = host.client(spec.project)
    present = {instance_name(i): i for i in pc.instances.all()}
    for m in spec.members:
        inst = present.get(m.name)
        addrs = ", ".join(a for a in (m.airgap, m.services) if a)
        if inst is None:
            rows.append(MemberStatus(m.name, m.role, "missing", addrs, ""))
            continue
        svc = ""
        if inst.status == "Running" and ROLE_UNITS.get(m.role):
            n = LXDNode(m.name, project=spec.project)
            r = n.run(["systemctl", "is-active", *ROLE_UNITS[m.role]], check=False, timeout=15)
            svc = ", ".join(f"{u}={s}" for u, s in zip(ROLE_UNITS[m.role],
                                                        r.stdout.split(), strict=False))
        rows.append(MemberStatus(m.name, m.role, inst.status, addrs, svc))
    return st, rows


def shell(spec: LabSpec, instance: str) -> int:
    """An interactive shell in an instance (lxc exec: pylxd has no interactive TTY)."""
    spec.member(instance)
    return subprocess.call(["lxc", "exec", "--project", spec.project, instance, "--", "bash",
                            "-l"])
