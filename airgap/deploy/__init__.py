"""Deploy: from a verified bundle to a joined cluster.

The seed procedure is a page of commands typed on every node in the right order. Here
every step first observes the node (``snap list``, the file's current content,
``k8s local-node-status``, the cluster's node list) and acts only when the observation says the
step is not done, so a re-run after success issues no install or join, and a re-run
after a failure on one node continues from where that node stopped. There is no
state file to go stale: the nodes are the state.

Order per node: bundle transferred and verified on arrival -> snapd, the base snap
and k8s (``--classic``) acknowledged and installed -> placeholder default route, now
and persistent -> containerd configuration for the plan's modes (hosts.d with CA,
proxy drop-in + daemon-reload, side-loaded archives), containerd restarted only when
something changed -> ``k8s bootstrap --name`` on the first control-plane node -> a join
token per other node, joins with ``--name`` (workers in parallel, control planes one at a
time) -> wait until every node is Ready -> on nodes whose side-loaded archives arrived
before containerd ran (the real snap starts it at bootstrap/join), confirm the images.
Nodes are prepared in parallel.

A node without snapd, or a bundle without snaps, fails the first step on that node.
Assertions snapd does not trust fail `snap ack` unless ``dangerous`` (the lab's
stand-in snaps only) installs those snaps with ``--dangerous``, named in the report.
"""

from __future__ import annotations

from airgap.deploy.cluster import (
    BOOTSTRAP_CONFIG,
    BOOTSTRAP_FEATURES,
    BOOTSTRAP_TIMEOUT,
    JOIN_CONFIG,
    JOIN_SCRIPT,
    JOIN_TIMEOUT,
    TOKEN_PLACEHOLDER,
    bootstrap_config,
    form_cluster,
    join_config,
)
from airgap.deploy.contents import BundleContents, BundleSnap, read_bundle
from airgap.deploy.context import (
    CONFIRM_TIMEOUT,
    DELIVERED,
    PENDING,
    PRESENT,
    READY_POLL,
    READY_TIMEOUT,
    REMOTE_BUNDLE,
    STATE_DIR,
)
from airgap.deploy.members import (
    NOT_A_MEMBER,
    ClusterNode,
    cluster_member,
    cluster_nodes,
    in_cluster,
    parse_nodes,
)
from airgap.deploy.report import DeployReport, NodeReport, StepResult, StepStatus
from airgap.deploy.run import deploy
from airgap.deploy.sideload import SIDELOAD_STEP, confirm_sideloaded, default_deliver
from airgap.deploy.steps import (
    SNAP_INSTALL_TIMEOUT,
    NodeDeploy,
    ensure_file,
    ensure_files,
)

__all__ = [
    "BOOTSTRAP_CONFIG",
    "BOOTSTRAP_FEATURES",
    "BOOTSTRAP_TIMEOUT",
    "CONFIRM_TIMEOUT",
    "DELIVERED",
    "JOIN_CONFIG",
    "JOIN_SCRIPT",
    "JOIN_TIMEOUT",
    "NOT_A_MEMBER",
    "PENDING",
    "PRESENT",
    "READY_POLL",
    "READY_TIMEOUT",
    "REMOTE_BUNDLE",
    "SIDELOAD_STEP",
    "SNAP_INSTALL_TIMEOUT",
    "STATE_DIR",
    "TOKEN_PLACEHOLDER",
    "BundleContents",
    "BundleSnap",
    "ClusterNode",
    "DeployReport",
    "NodeDeploy",
    "NodeReport",
    "StepResult",
    "StepStatus",
    "bootstrap_config",
    "cluster_member",
    "cluster_nodes",
    "confirm_sideloaded",
    "default_deliver",
    "deploy",
    "ensure_file",
    "ensure_files",
    "form_cluster",
    "in_cluster",
    "join_config",
    "parse_nodes",
    "read_bundle",
]
