"""The bastion: the connected side, where regsync and regctl run.

It trusts the lab CA and resolves the upstream registry names to the simulated
upstream; regsync and regctl are copied in from this machine's pinned builds.
"""

from __future__ import annotations

from airgap.errors import AirgapError
from airgap.tools import find_tool
from lab.lxd import LXDNode
from lab.roles import RoleContext, configure_common, trust_lab_ca


def configure(node: LXDNode, ctx: RoleContext) -> list[str]:
    """Returns the tools it could not install (missing on this machine)."""
    configure_common(node, ctx)
    trust_lab_ca(node, ctx)
    missing = []
    for tool in ("regctl", "regsync"):
        try:
            path = find_tool(tool)
        except AirgapError:
            missing.append(tool)
            continue
        node.put(path, f"/usr/local/bin/{tool}", 0o755)
    return missing
