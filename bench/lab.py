"""Lab timings: lab.image cold and cached, lab.up (fresh and again), lab.down, and the
LXD floor lab.up is measured against.

The floor: the same instances (same image, same root disk, nesting and /dev/fuse on
the nodes) created and booted to `systemctl is-system-running` in parallel in a project
of their own, with no networks and no configuration: what LXD itself needs. lab.up
adds the bridges, the blackholes, the CAs, the registry, squid, the upstream's images
and each role's configuration. Prints figures; asserts nothing about speed. Needs root
and a running LXD (`invoke lab.host`). `--keep-cache` skips the cold build (it removes the cached
base image tarball of the current recipe and rebuilds it with debootstrap).

    python -m bench.lab [--nodes N] [--keep-cache]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--slot", type=int, default=100)
    ap.add_argument("--keep-cache", action="store_true", help="skip the cold image build")
    args = ap.parse_args()

    from lab import host, lifecycle
    from lab.image import build_image, default_recipe, tarball_path
    from lab.topology import LabSpec

    if os.geteuid() != 0 or not host.lxd_answers():
        print("bench.lab: needs root and a running LXD (invoke lab.host); skipped")
        return
    figures: list[tuple[str, float, str]] = []
    recipe = default_recipe()
    if not args.keep_cache:
        tarball_path(recipe).unlink(missing_ok=True)
        built = build_image(recipe)
        size = built.tarball.stat().st_size / 2**20
        figures.append(("lab.image (cold: debootstrap)", built.seconds,
                        f"{built.alias}, {size:.0f} MiB"))
    built = build_image(recipe)
    figures.append(("lab.image (cached)", built.seconds, built.alias))

    spec = LabSpec(name="bench", nodes=args.nodes, slot=args.slot)
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        root = Path(tmp)
        lifecycle.down(spec, root=root)
        try:
            res = lifecycle.up(spec, root=root)
            parts = ", ".join(f"{k} {v:.1f}" for k, v in res.state.timings.items())
            figures.append((f"lab.up ({args.nodes} nodes, {len(spec.members)} instances)",
                            res.seconds, parts))
            t = time.monotonic()
            lifecycle.up(spec, root=root)
            figures.append(("lab.up again (idempotent)", time.monotonic() - t, ""))
        finally:
            down = lifecycle.down(spec, root=root)
        figures.append(("lab.down", down.seconds, f"{len(down.removed)} objects removed"))

    floor = boot_floor(recipe, args.nodes)
    figures.append((f"LXD floor: {len(spec.members)} bare instances booted", floor,
                    "same image and devices, no networks, no configuration"))
    up = next(f[1] for f in figures if f[0].startswith("lab.up ("))
    figures.append(("lab.up / LXD floor", up / floor, "ratio"))

    width = max(len(f[0]) for f in figures)
    print(f"{'what':<{width}}  {'seconds':>8}  notes")
    for what, secs, note in figures:
        print(f"{what:<{width}}  {secs:8.2f}  {note}")
    print("instances are LXD containers on this machine; nodes run Debian's snapd "
          "(deploy installs the lab's stand-in k8s snap), not the k8s snap")


def boot_floor(recipe: object, nodes: int) -> float:
    """Seconds to import the image and boot the lab's instances bare, in parallel."""
    from lab import host, instances
    from lab.image import build_image
    from lab.lxd import LXDNode, wait_system_running
    from lab.topology import InstanceType, LabSpec, Member

    spec = LabSpec(name="bfloor", nodes=nodes, slot=101)
    c = host.client()
    t = time.monotonic()
    try:
        instances.ensure_project(spec)
        built = build_image(recipe)  # type: ignore[arg-type]
        instances.ensure_image(spec, built)

        def boot(m: Member) -> None:
            cfg = instances.instance_config(spec, m, InstanceType.container)
            cfg["devices"] = {k: v for k, v in cfg["devices"].items() if v["type"] != "nic"}
            cfg["source"] = {"type": "image", "alias": built.alias}
            inst = host.client(spec.project).instances.create(cfg, wait=True)
            inst.start(wait=True)
            wait_system_running(LXDNode(m.name, project=spec.project), 300)

        instances.for_each_member(boot, spec.members)
        return time.monotonic() - t
    finally:
        instances.remove_project(c, spec)


if __name__ == "__main__":
    main()
