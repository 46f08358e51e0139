"""Nodes built from the plan: the one place that maps ``transport:`` to a Node class.

Tasks call ``build_nodes(plan, transports=...)`` and hand the result to deploy,
preflight and side-load, so every step works the same over local, SSH and LXD
transports. Local and SSH are the library's own; any other transport (LXD, which the
lab provides as ``lab.lxd.TRANSPORTS``) is injected by the caller, so the library
never imports the lab.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from airgap.errors import PlanError
from airgap.nodes.base import Node
from airgap.nodes.local import LocalNode
from airgap.nodes.ssh import SSHNode
from airgap.plan import Node as PlanNode
from airgap.plan import Plan, Transport

NodeFactory = Callable[[PlanNode], Node]
Transports = Mapping[Transport, NodeFactory]


def build_node(plan: Plan, node: PlanNode, transports: Transports | None = None) -> Node:
    if node.transport is Transport.local:
        return LocalNode(name=node.name)
    if node.transport is Transport.ssh:
        key = plan.resolve(node.ssh.key_file) if node.ssh.key_file else None
        return SSHNode(
            name=node.name,
            host=node.address,
            user=node.ssh.user,
            port=node.ssh.port,
            key_file=key,
            strict_host_key_checking=node.ssh.strict_host_key_checking,
        )
    factory = (transports or {}).get(node.transport)
    if factory is None:
        raise PlanError(
            f"{plan.source}: nodes: {node.name}: transport {node.transport.value} is not "
            "available here",
            resolution=(
                "transport lxd is for the lab's instances and works through `invoke` (the "
                "tasks provide it); for real machines use transport: ssh or local."
            ),
        )
    return factory(node)


def build_nodes(plan: Plan, only: Sequence[str] | None = None,
                transports: Transports | None = None) -> dict[str, Node]:
    """Nodes in plan order; ``only`` restricts to the named ones (PlanError if unknown);
    ``transports`` builds the nodes of transports other than local and ssh."""
    wanted = [plan.node(n) for n in only] if only else list(plan.nodes)
    return {n.name: build_node(plan, n, transports) for n in wanted}


def close_nodes(nodes: dict[str, Node]) -> None:
    for node in nodes.values():
        closer = getattr(node, "close", None)
        if callable(closer):
            closer()
