"""What every step of one deploy shares: the plan, the bundle, the rendered files, and
how to wait (timeouts, an injectable clock and sleep), fan out and report progress."""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from airgap.deploy.contents import BundleContents
from airgap.nodes import Node
from airgap.plan import Plan
from airgap.progress import NodeSay, node_quiet
from airgap.render import RenderedFile
from airgap.wait import Clock, Sleep

STATE_DIR = "/var/lib/k8s-airgap"
REMOTE_BUNDLE = f"{STATE_DIR}/bundle"

READY_TIMEOUT = 900.0
READY_POLL = 5.0
CONFIRM_TIMEOUT = 300.0

# What the side-load hook did on a node.
PRESENT = "present"  # every archived image already in the runtime; nothing sent
DELIVERED = "delivered"  # archives copied, containerd restarted, images confirmed
PENDING = "pending"  # archives copied; containerd is not running yet (real snap before
# bootstrap/join): the snap imports them when bootstrap or join starts it

Deliver = Callable[[Plan, Node, Sequence[Path]], str]



@dataclass(frozen=True)
class Context:
    plan: Plan
    bundle: BundleContents
    local_sums: dict[Path, str]
    hosts_files: list[RenderedFile]
    proxy_files: list[RenderedFile]
    deliver: Deliver
    confirm_timeout: float = CONFIRM_TIMEOUT
    ready_timeout: float = READY_TIMEOUT
    ready_poll: float = READY_POLL
    sleep: Sleep = time.sleep
    clock: Clock = time.monotonic
    parallel: int = 8
    progress: NodeSay = node_quiet
    # Install snaps whose assertions snapd does not trust with --dangerous (the lab's).
    dangerous: bool = False
    # upgrade: refresh k8s on cluster members (deploy refuses to; airgap.deploy.upgrade).
    refresh: bool = False


def remote_path(bundle: BundleContents, local: Path) -> str:
    """Where a bundle file goes on a node: the same relative path below REMOTE_BUNDLE."""
    return posixpath.join(REMOTE_BUNDLE, bundle.layout.rel(local))
