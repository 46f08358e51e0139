"""invoke lab.*: thin wrappers around lab.lifecycle, lab.image, lab.host and lab.proof."""

from __future__ import annotations

import time
from pathlib import Path

from invoke import Collection, Context, Exit, task  # type: ignore[attr-defined]
from rich.console import Console
from rich.table import Table

from airgap.cli import configure_logging, user_errors
from airgap.errors import AirgapError

console = Console(stderr=True)
out = Console()


NO_SLOT = -1


def _slot(slot: int) -> int | None:
    """--slot: -1 (the default) means the slot recorded in the lab's lab.json."""
    return None if slot == NO_SLOT else slot


def _print(*items: object) -> None:
    """stdout (for tasks whose --out flag shadows the console's name)."""
    out.print(*items)


def _say(msg: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")


@task(help={"debug": "Log every command run."})
def host(c: Context, debug: bool = False) -> None:
    """Check the programs the lab needs, start LXD if it is not running, initialise it."""
    configure_logging(debug)
    from lab import host as lab_host

    with user_errors():
        done = lab_host.setup_host()
        ok, why = lab_host.vm_support(lab_host.client())
    for line in done or ["LXD already running and initialised"]:
        out.print(line)
    out.print(f"instances: {'VMs possible' if ok else 'containers only'} ({why})")


@task(help={"rebuild": "Build again even if the cached tarball exists.",
            "debug": "Log every command run."})
def image(c: Context, rebuild: bool = False, debug: bool = False) -> None:
    """Build the lab's base image tarball with debootstrap, or find it cached."""
    configure_logging(debug)
    from lab.image import build_image

    with user_errors():
        built = build_image(rebuild=rebuild, progress=_say)
    how = "cached" if built.cached else "built"
    out.print(f"{built.alias}: {how} in {built.seconds:.1f} s ({built.tarball})")


@task(help={
    "name": "Lab name (1-6 lowercase letters/digits); bridges are NAME-airgap, NAME-services.",
    "nodes": "Number of nodes (node-1..N).",
    "slot": "Address slot: the lab uses 10.213.(2*SLOT).0/23.",
    "instance_type": "auto (VMs where the server supports them), vm or container.",
    "upstream": "simulated (a registry posing as ghcr.io etc.) or internet (not verified here); "
                "default: simulated, internet with --k8s-snap.",
    "images": "File with the image list for the simulated upstream (default: a small list).",
    "image_server": "LXD simplestreams image server URL for VM images (default: "
                    "$K8S_AIRGAP_IMAGE_SERVER; none: build locally).",
    "k8s_snap": "Nodes for the real k8s snap: Ubuntu VMs from --image-server, no stand-in.",
    "runtime": "What the nodes run: snapd (default: Debian's snapd; deploy installs the "
               "lab's stand-in snaps) or k8s-snap (same as --k8s-snap).",
    "debug": "Log every command run.",
})
def up(c: Context, name: str = "lab", nodes: int = 2, slot: int = 0,
       instance_type: str = "auto", upstream: str = "", images: str = "",
       image_server: str = "", k8s_snap: bool = False, runtime: str = "",
       debug: bool = False) -> None:
    """Bring up (or complete) an air-gapped lab; writes .lab/NAME/airgap.yaml."""
    configure_logging(debug)
    import os

    from airgap.plan.images import read_image_list
    from lab import lifecycle
    from lab.topology import InstanceType, LabSpec, Runtime, Upstream

    with user_errors():
        extra: dict[str, object] = {}
        if images:
            extra["images"] = tuple(r.name for r in read_image_list(images))
        runtime = runtime or (Runtime.k8s_snap.value if k8s_snap else Runtime.snapd.value)
        upstream = upstream or ("internet" if runtime == Runtime.k8s_snap.value else "simulated")
        try:
            itype, up_mode = InstanceType(instance_type), Upstream(upstream)
            kind = Runtime(runtime)
        except ValueError as exc:
            raise AirgapError(str(exc), resolution="See `invoke --help lab.up`.") from None
        spec = LabSpec(name=name, nodes=int(nodes), slot=int(slot), instance_type=itype,
                       upstream=up_mode, runtime=kind, **extra)  # type: ignore[arg-type]
        server = image_server or os.environ.get("K8S_AIRGAP_IMAGE_SERVER") or None
        res = lifecycle.up(spec, image_server=server, progress=_say)
    st = res.state
    t = Table(title=f"lab {st.name} ({st.instance_type}s: {st.instance_type_reason})")
    for col in ("instance", "role", "addresses", "notes"):
        t.add_column(col)
    for m in st.members:
        addrs = ", ".join(a for a in (m["airgap"], m["services"]) if a)
        note = st.runtime if m["role"] == "node" else ""
        if m["role"] == "upstream":
            note = st.upstream_content
        t.add_row(m["name"], m["role"], addrs, note)
    out.print(t)
    out.print(f"plan: {res.plan}  (CA {st.ca_file})")
    out.print(f"lab.up took {res.seconds:.1f} s")


@task(help={"name": "Lab name.",
            "slot": "Address slot (default: the one in .lab/NAME/lab.json, or its bridge's).",
            "debug": "Log every command run."})
def down(c: Context, name: str = "lab", slot: int = NO_SLOT, debug: bool = False) -> None:
    """Remove the lab: instances, project, images, bridges, firewall rules, blackhole route."""
    configure_logging(debug)
    from lab import lifecycle, state

    with user_errors():
        spec = state.spec_from_state(name, slot=_slot(slot))
        res = lifecycle.down(spec, progress=_say)
    out.print(f"lab.down took {res.seconds:.1f} s: " + (", ".join(res.removed) or "nothing left"))


@task(help={"name": "Lab name.",
            "slot": "Address slot (default: the one in .lab/NAME/lab.json, or its bridge's).",
            "debug": "Log every command run."})
def status(c: Context, name: str = "lab", slot: int = NO_SLOT,
           debug: bool = False) -> None:
    """Show the lab's instances, their roles, addresses and services."""
    configure_logging(debug)
    from lab import lifecycle, state

    with user_errors():
        spec = state.spec_from_state(name, slot=_slot(slot))
        st, rows = lifecycle.status(spec)
    if not rows:
        out.print(f"lab {name}: not up (no project {spec.project})")
        return
    t = Table(title=f"lab {name}" + (f" ({st.instance_type}s)" if st else ""))
    for col in ("instance", "role", "status", "addresses", "services"):
        t.add_column(col)
    for r in rows:
        t.add_row(r.name, r.role, r.status, r.addresses, r.services)
    out.print(t)
    if st:
        out.print(f"nodes: {st.runtime}")
        out.print(f"upstream: {st.upstream_content}")
        out.print(f"plan: {st.plan_file}")


@task(help={"instance": "Instance name (registry, proxy, upstream, bastion, node-N).",
            "name": "Lab name."})
def shell(c: Context, instance: str, name: str = "lab") -> None:
    """Open a shell in a lab instance."""
    if instance.startswith("-"):
        # invoke hands a required positional the next word, even --help.
        out.print("Usage: invoke lab.shell INSTANCE [--name LAB]\n\n  Open a shell in a lab "
                  "instance: registry, proxy, upstream, bastion or node-N (see lab.status).")
        return
    from lab import lifecycle, state

    with user_errors():
        spec = state.spec_from_state(name)
        rc = lifecycle.shell(spec, instance)
    if rc:
        raise Exit(code=rc)


@task(help={
    "nodes": "Number of nodes (node-1..N).",
    "keep": "Keep the lab (and its work files) afterwards for inspection.",
    "out": "Directory for e2e-report.md and e2e-report.json.",
    "k8s_snap": "Full proof with the real k8s snap (needs snapd, the Snap Store and VMs).",
    "name": "Lab name (1-6 lowercase letters/digits).",
    "slot": "Preferred address slot (the first free one from here is used).",
    "day2": "The day-2 proof instead: a delta bundle, a rolling upgrade on 2 control "
    "planes and a worker (one made unreachable mid-rollout), a node added later.",
    "catalogue": "The failure catalogue instead: every known cause induced, caught before "
    "install with its fix, undone, and the check passing again.",
    "debug": "Log every command run.",
})
def prove(c: Context, nodes: int = 2, keep: bool = False, out: str = "reports",
          k8s_snap: bool = False, name: str = "e2e", slot: int = 0, day2: bool = False,
          catalogue: bool = False, debug: bool = False) -> None:
    """Prove proxy, mirror and sideload end to end in a fresh lab; writes a report."""
    configure_logging(debug)
    from pathlib import Path

    from lab import proof

    t0 = time.monotonic()
    if catalogue:
        _prove_catalogue(name if name != "e2e" else "catlg", Path(out), keep, int(slot))
        _print(f"lab.prove --catalogue took {time.monotonic() - t0:.0f} s")
        return
    if day2:
        _prove_day2(name if name != "e2e" else "day2", Path(out), keep, int(slot))
        _print(f"lab.prove --day2 took {time.monotonic() - t0:.0f} s")
        return
    with user_errors():
        report = proof.prove(name=name, nodes=int(nodes), out=Path(out), keep=keep,
                             k8s_snap=k8s_snap, progress=_say, slot=int(slot))
    t = Table(title=f"lab proof: {'PASSED' if report.ok else 'FAILED'}")
    for col in ("mode", "pulls ok", "negative case", "failed as expected"):
        t.add_column(col)
    for mode in report.modes:
        rows = [p for p in report.pulls if p.mode == mode]
        neg = next((n for n in report.negatives if n.mode == mode), None)
        t.add_row(mode, f"{sum(p.ok for p in rows)}/{len(rows)}", neg.case if neg else "-",
                  ("yes" if neg.failed_as_expected else "NO") if neg else "-")
    _print(t)
    iso = sum(i.ok for i in report.isolation)
    _print(f"isolation checks ok: {iso}/{len(report.isolation)}")
    for err in report.errors:
        _print(f"[red]error:[/red] {err}")
    _print(f"report: {Path(out) / 'e2e-report.md'} (and .json)")
    _print(f"lab.prove took {time.monotonic() - t0:.0f} s")
    if not report.ok:
        raise Exit("The proof FAILED: see the report.", code=1)


ns = Collection("lab")
for t in (host, image, up, down, status, shell, prove):
    ns.add_task(t)


def _prove_day2(name: str, out: Path, keep: bool, slot: int) -> None:
    from lab.proof.day2 import prove_day2

    with user_errors():
        report = prove_day2(name=name, out=out, keep=keep, progress=_say, slot=slot)
    t = Table(title=f"day-2 proof: {'PASSED' if report.ok else 'FAILED'}")
    for col in ("case", "expected", "result"):
        t.add_column(col)
    for case in report.cases:
        t.add_row(case.case, case.expected, "ok" if case.ok else "FAILED")
    _print(t)
    for err in report.errors:
        _print(f"[red]error:[/red] {err}")
    _print(f"report: {out / 'day2-report.md'} (and .json)")
    if not report.ok:
        raise Exit("The day-2 proof FAILED: see the report.", code=1)


def _prove_catalogue(name: str, out: Path, keep: bool, slot: int) -> None:
    from lab.proof.catalogue import prove_catalogue

    with user_errors():
        report = prove_catalogue(name=name, out=out, keep=keep, progress=_say, slot=slot)
    t = Table(title=f"failure catalogue: {'PASSED' if report.ok else 'FAILED'}")
    for col in ("cause", "check", "exit", "fix", "after undoing"):
        t.add_column(col)
    for r in report.rows:
        t.add_row(r.cause, r.check, str(r.exit_code), r.fix, r.restored)
    _print(t)
    for err in report.errors:
        _print(f"[red]error:[/red] {err}")
    _print(f"report: {out / 'catalogue-report.md'} (and .json)")
    if not report.ok:
        raise Exit("The failure catalogue FAILED: see the report.", code=1)
