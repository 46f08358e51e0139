"""The lab's instances: the project they live in, how each is launched, when it is ready,
and the role each one is given.

With ``runtime: k8s-snap`` the nodes are VMs (the k8s snap runs containers, which an
LXD container here cannot) launched from an Ubuntu image pulled from ``--image-server``
(a simplestreams server; Ubuntu images ship snapd), with no stand-in; the other roles
stay containers from the local base image. Everything that differs between containers
and VMs (agent wait, NIC naming, Secure Boot, sizing) is decided here, with the
constants below. Their NICs sit on the same bridges, so the lab's rules apply unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from pylxd.exceptions import NotFound

from airgap import process
from airgap.errors import AirgapError
from airgap.fanout import fan_out, fan_out_by
from lab import host
from lab.ca import LabCA
from lab.image import BuiltImage
from lab.lxd import LXDNode, wait_address, wait_system_running, wait_until
from lab.ocibuild import Builder, Regctl, push_layout
from lab.roles import RoleContext, bastion, node, proxy, registry, upstream
from lab.topology import UPSTREAM_PORT, InstanceType, LabSpec, Member

log = logging.getLogger(__name__)
R = TypeVar("R")

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


def for_each_member(fn: Callable[[Member], R], members: list[Member]) -> dict[str, R]:
    """fn for every member at once (each waits on its own instance), by member name.

    Every call runs to its end; then the error of the first failed member by name is
    raised, any other exception wrapped in an AirgapError that names the member.
    """
    def attempt(m: Member) -> tuple[R | None, BaseException | None]:
        try:
            return fn(m), None
        except BaseException as exc:  # collected, raised below once all have finished
            return None, exc

    outcomes = fan_out_by(attempt, members, limit=max(1, len(members)), name="lab-member")
    errors = sorted(((m.name, exc) for m, (_, exc) in outcomes.items() if exc is not None),
                    key=lambda e: e[0])
    if errors:
        first_name, first = errors[0]
        if isinstance(first, AirgapError):
            raise first
        raise AirgapError(f"{first_name}: {type(first).__name__}: {first}",
                          details="; ".join(f"{n}: {e}" for n, e in errors[1:]) or None,
                          resolution=f"Inspect it with `invoke lab.shell {first_name}`, "
                          "then run `invoke lab.up` again (it completes the lab).") from first
    return {m.name: cast(R, result) for m, (result, _) in outcomes.items()}


# The project and its image ---------------------------------------------------


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


def remove_project(c: Any, spec: LabSpec) -> list[str]:
    """Every instance, image, volume and profile of the lab's project, then the project."""
    if not c.projects.exists(spec.project):
        return []
    removed: list[str] = []
    pc = host.client(spec.project)
    insts = pc.instances.all()

    def drop(inst: Any) -> None:
        if inst.status != "Stopped":
            inst.stop(force=True, wait=True)
        inst.delete(wait=True)

    fan_out(drop, insts, limit=max(1, len(insts)), name="lab-drop")
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
    return removed


def instance_name(inst: Any) -> str:
    """pylxd 2.4 leaves "?project=..." on names listed in a non-default project."""
    return str(inst.name).split("?", 1)[0]


def _custom_volumes(pc: Any) -> list[Any]:
    try:
        pool = pc.storage_pools.get(host.STORAGE_POOL)
        return [v for v in pool.volumes.all() if v.type == "custom"]
    except Exception:
        return []


# Instances ---------------------------------------------------------------------


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
            # snapd mounts snaps with squashfuse (no loop devices in a container); the
            # host's /dev/fuse appears inside owned by nobody, so it is made afresh.
            devices["fuse"] = {"type": "unix-char", "path": "/dev/fuse"}
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
            raise AirgapError(f"{m.name}: a VM needs --image-server",
                              resolution="Pass --image-server URL (an LXD simplestreams "
                              "server) or set K8S_AIRGAP_IMAGE_SERVER.")
        return {"type": "image", "mode": "pull", "server": image_server,
                "protocol": VM_IMAGE_PROTOCOL, "alias": VM_NODE_IMAGE}
    return {"type": "image", "alias": alias}


def launch(spec: LabSpec, m: Member, itype: InstanceType, alias: str,
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


def ready(spec: LabSpec, m: Member, itype: InstanceType = InstanceType.container) -> None:
    lxd_node = LXDNode(m.name, project=spec.project)
    if itype is InstanceType.vm:
        _ready_vm(lxd_node, m)
        return
    wait_until(f"the LXD agent/exec on {m.name}",
               lambda: lxd_node.run(["true"], check=False, timeout=10).ok,
               timeout=AGENT_TIMEOUT)
    wait_system_running(lxd_node, BOOT_TIMEOUT)
    i = 0
    for addr in (m.services, m.airgap):
        if addr:
            wait_address(lxd_node, f"eth{i}", addr, ADDRESS_TIMEOUT)
            i += 1


def _booted(lxd_node: LXDNode) -> str | None:
    """systemd's state once booting is over; a VM's "degraded" is reported, not fatal
    (Ubuntu cloud images carry units that fail without their hardware)."""
    r = lxd_node.run(["systemctl", "is-system-running"], check=False, timeout=15)
    s = r.stdout.strip()
    return s if s in ("running", "degraded") else None


def _ready_vm(lxd_node: LXDNode, m: Member) -> None:
    wait_until(f"the LXD VM agent on {m.name} (lxd-agent starts after firmware and kernel)",
               lambda: lxd_node.run(["true"], check=False, timeout=10).ok,
               timeout=VM_AGENT_TIMEOUT)
    lxd_node.run(["cloud-init", "status", "--wait"], check=False, timeout=VM_BOOT_TIMEOUT)
    state = wait_until(f"`systemctl is-system-running` on {m.name}", lambda: _booted(lxd_node),
                       timeout=VM_BOOT_TIMEOUT)
    if state == "degraded":
        failed = lxd_node.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False)
        log.warning("%s: systemd is degraded after boot: %s", m.name, failed.stdout.strip())
    if m.airgap:
        wait_until(f"{m.name} to get {m.airgap} (DHCP)",
                   lambda: f" {m.airgap}/" in lxd_node.run(["ip", "-4", "-o", "addr", "show"],
                                                           check=False, timeout=10).stdout,
                   timeout=ADDRESS_TIMEOUT)


# Roles -------------------------------------------------------------------------


def registry_htpasswd() -> bytes | None:
    user, pw = os.environ.get("LAB_REGISTRY_USERNAME"), os.environ.get("LAB_REGISTRY_PASSWORD")
    if not user or not pw:
        return None
    # -i: the password comes on stdin, never in argv.
    out = process.run(["htpasswd", "-niB", user], input=pw.encode(),
                      resolution="apt-get install apache2-utils (htpasswd)")
    return out.stdout.encode()


def configure(spec: LabSpec, m: Member, ca: LabCA, public_ca: LabCA,
              htpasswd: bytes | None) -> list[str]:
    """Give the instance its role; the bastion returns the tools this machine lacks."""
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
        node.configure(n, ctx)
    return []


def fill_upstream(spec: LabSpec, public_ca: LabCA, work: Path) -> list[dict[str, str]]:
    """Push fabricated images with the real names into the simulated upstream."""
    up = spec.member("upstream")
    target = f"{up.services}:{UPSTREAM_PORT}"
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
