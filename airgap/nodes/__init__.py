"""Nodes: where steps run. One protocol, several transports.

Every deploy, side-load and preflight step takes Nodes, so the same code serves the
lab (LXDNode, in lab/lxd.py, injected through ``build_nodes(plan, transports=...)``),
real machines over SSH (``ssh``) and this machine (``local``, optionally inside a
network namespace). ``build`` maps the plan's ``transport:`` to a Node. Unit tests use
a recording fake.
"""

from airgap.nodes.base import (
    HAS_COMMAND_SCRIPT,
    Node,
    RunResult,
    check_result,
    has_command,
    node_tmp,
    read_text,
    shell_quote,
)
from airgap.nodes.build import build_node, build_nodes, close_nodes
from airgap.nodes.local import LocalNode
from airgap.nodes.ssh import SSH_CONNECT_TIMEOUT, SSHNode, redact_env

__all__ = [
    "HAS_COMMAND_SCRIPT", "SSH_CONNECT_TIMEOUT",
    "LocalNode", "Node", "RunResult", "SSHNode", "build_node", "build_nodes",
    "check_result", "close_nodes", "has_command", "node_tmp", "read_text", "redact_env",
    "shell_quote",
]
