"""lab up / down / status: one LXD project per lab, two bridges, the roles, a plan.

Order matters for network safety: the lab's /23 is blackholed and the lab's firewall
rules are in place before any bridge exists, and they go last on down. Up is
idempotent (it creates only what is missing and re-applies role configuration); down
derives every name from the lab's spec, so it also cleans a half-built lab. The steps
live in lab.network, lab.instances, lab.plandocs and lab.state; this module orders them.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from airgap.progress import Say
from lab import host, instances, network, state
from lab.ca import LabCA
from lab.image import build_image
from lab.lxd import LXDNode
from lab.plandocs import write_plans
from lab.state import LabState, state_dir
from lab.topology import (
    PROXY_PORT,
    REGISTRY_HTTP_PORT,
    REGISTRY_HTTPS_PORT,
    LabSpec,
    Upstream,
)


@dataclass
class UpResult:
    state: LabState
    plan: Path
    created: dict[str, str]
    seconds: float


def up(spec: LabSpec, *, root: Path | None = None, image_server: str | None = None,
       progress: Say | None = None) -> UpResult:
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    c = host.client()
    if raised := host.raise_limits():
        say(f"host limits for many containers (LXD's production settings): {', '.join(raised)}")
    types = instances.choose_instance_types(c, spec, image_server)
    itype, why = types.services, types.reason
    say(f"instances: {itype.value}s ({why})")
    directory = state_dir(spec.name, root)
    directory.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    built = build_image(progress=say)
    timings["image"] = time.monotonic() - t

    network.check_slot_free(spec)
    say(f"blackhole route {spec.block} and firewall rules ({spec.firewall_tag})")
    network.guard(spec)
    instances.ensure_project(spec)
    made = network.ensure_networks(spec)
    say(f"bridges {', '.join(spec.bridges)}" + (f" (created {', '.join(made)})" if made else ""))

    t = time.monotonic()
    instances.ensure_image(spec, built)
    timings["import"] = time.monotonic() - t
    ca = LabCA.load_or_create(directory, spec.name)
    public_ca = LabCA.load_or_create(directory, spec.name, stem="public-ca",
                                     title="public CA (simulated web PKI)")

    members = spec.members
    t = time.monotonic()
    created = instances.for_each_member(
        lambda m: instances.launch(spec, m, types.of(m), built.alias, image_server), members)
    instances.for_each_member(lambda m: instances.ready(spec, m, types.of(m)), members)
    timings["launch"] = time.monotonic() - t
    say(f"{len(members)} instances ready")

    t = time.monotonic()
    htpasswd = instances.registry_htpasswd()
    missing = instances.for_each_member(
        lambda m: instances.configure(spec, m, ca, public_ca, htpasswd), members)
    timings["roles"] = time.monotonic() - t
    tools_missing = sorted({tool for v in missing.values() for tool in v})
    if tools_missing:
        say(f"bastion: {', '.join(tools_missing)} not installed on this machine (invoke tools)")

    content = "none (internet mode: the real registries)"
    if spec.upstream is Upstream.simulated:
        t = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="k8s-airgap-upstream-") as work:
            pushed = instances.fill_upstream(spec, public_ca, Path(work))
        timings["upstream"] = time.monotonic() - t
        content = (f"fabricated stand-in images with the real names ({len(pushed)}), "
                   "not the real upstream content")
        say(f"simulated upstream: {len(pushed)} images pushed")

    plan = write_plans(spec, directory)
    reg = spec.member("registry")
    prx = spec.member("proxy")
    st = LabState(
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
    st.write(directory)
    return UpResult(st, plan, {k: str(v) for k, v in created.items()},
                    time.monotonic() - t0)


@dataclass
class DownResult:
    removed: list[str]
    seconds: float


def down(spec: LabSpec, *, root: Path | None = None, progress: Say | None = None
         ) -> DownResult:
    """Remove everything up made, whatever state the lab is in."""
    say = progress or (lambda _m: None)
    t0 = time.monotonic()
    removed: list[str] = []
    if host.lxd_answers():
        c = host.client()
        removed += instances.remove_project(c, spec)
        removed += network.remove_inside_host(spec)  # the offline-mirror mode's, if left
        removed += network.remove_networks(c, spec)
    removed += network.unguard(spec)
    removed += state.forget(spec.name, root)
    say(", ".join(removed) or "nothing to remove")
    return DownResult(removed, time.monotonic() - t0)


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
    present = {instances.instance_name(i): i for i in pc.instances.all()}
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
