"""Nodes built from the plan: the one place that maps ``transport:`` to a Node class.

Tasks call ``build_nodes(plan)`` and hand the result to deploy, preflight and
side-load, so every step works the same over local, SSH and LXD transports. LXD is
imported lazily: the lab (and pylxd) is only needed for plans that name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airgap.config import Node as PlanNode
from airgap.config import Plan, Transport
from airgap.errors import PlanError
from airgap.nodes import LocalNode, Node, SSHNode


def build_node(plan: Plan, node: PlanNode) -> Node:
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
    if node.transport is Transport.lxd:
        return _lxd_node(node)
    raise PlanError(f"{plan.source}: nodes: {node.name}: unknown transport {node.transport}")


def _lxd_node(node: PlanNode) -> Node:
    try:
        import lab.lxd as lxd
    except ImportError as exc:
        raise PlanError(
            f"node {node.name}: transport lxd needs the lab package (lab/lxd.py) and pylxd",
            details=str(exc),
            resolution="Install the project with its dependencies (pip install -e .), "
            "or use transport: ssh for real machines.",
        ) from exc
    cls: Any = lxd.LXDNode
    instance = node.lxd.instance or node.name
    factory = getattr(cls, "from_plan_node", None)
    if callable(factory):
        built: Node = factory(node)
        return built
    built = cls(name=node.name, instance=instance, project=node.lxd.project)
    return built


def build_nodes(plan: Plan, only: Sequence[str] | None = None) -> dict[str, Node]:
    """Nodes in plan order; ``only`` restricts to the named ones (PlanError if unknown)."""
    wanted = [plan.node(n) for n in only] if only else list(plan.nodes)
    return {n.name: build_node(plan, n) for n in wanted}


def close_nodes(nodes: dict[str, Node]) -> None:
    for node in nodes.values():
        closer = getattr(node, "close", None)
        if callable(closer):
            closer()
