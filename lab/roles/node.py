"""Lab nodes: snapd seeded and ready for deploy's snap steps.

A node gets what every lab instance gets (hosts, resolver, the simulated web PKI) and
a snapd that has finished seeding; deploy installs snapd, the base and k8s from the
bundle (the lab's stand-in snaps, lab/snapset.py, on containers; the real k8s snap on
VM nodes). There is no runtime without snapd any more: the stand-in k8s snap's
containerd app is the node's runtime.
"""

from __future__ import annotations

from lab.lxd import LXDNode
from lab.roles import RoleContext, configure_common

# snapd seeds the image's snaps on first boot; `snap ack`/`snap install` wait or fail
# until that is over.
SNAPD_SEED_TIMEOUT = 600.0


def configure(node: LXDNode, ctx: RoleContext) -> None:
    configure_common(node, ctx)
    node.run(["snap", "wait", "system", "seed.loaded"], timeout=SNAPD_SEED_TIMEOUT)
    node.run(["snap", "version"], timeout=60)
