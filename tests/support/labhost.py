"""What a lab may leave on the host after lab.down: mounts and storage-pool entries."""

from __future__ import annotations

from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


def leftovers(project: str) -> list[str]:
    """Squashfuse mounts (the nodes' snaps) and the lab's entries under every LXD pool.

    LXD names an instance's volume ``<project>_<instance>`` in its pool's directory
    (containers/, virtual-machines/, ...); a mount of the lab's leaves its project's name
    in mountinfo.
    """
    from lab import host

    found = [f"mount: {line}" for line in MOUNTINFO.read_text().splitlines()
             if "squashfuse" in line or project in line]
    for pool in host.client().storage_pools.all():
        source = Path(str(pool.config.get("source", "")))
        roots = [source] if source.is_dir() else []
        roots += [p for p in (Path("/var/lib/lxd/storage-pools") / pool.name,
                              Path("/var/snap/lxd/common/lxd/storage-pools") / pool.name)
                  if p.is_dir()]
        for root in roots:
            for kind in root.iterdir():
                if kind.is_dir():
                    found += [f"pool {pool.name}: {e}" for e in kind.glob(f"{project}_*")]
    return sorted(set(found))
