"""The lab's state on disk: .lab/NAME/lab.json, what up made, for status, down and the tasks.

Down must work on a half-built lab too, so the spec of a lab can always be derived:
from lab.json, or (when it is gone) from the lab's air-gapped bridge, or the defaults.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airgap.fileio import write_atomic
from lab import host
from lab.network import network_blocks
from lab.topology import LabSpec, Runtime, Upstream

STATE_FILE = "lab.json"


def state_root() -> Path:
    return Path(os.environ.get("K8S_AIRGAP_LAB_DIR", ".lab")).absolute()


def state_dir(name: str, root: Path | None = None) -> Path:
    return (root or state_root()) / name


@dataclass
class LabState:
    """lab.json: what the lab is, for status, down and the other tasks."""

    name: str
    slot: int
    project: str
    bridges: dict[str, str]
    subnets: dict[str, str]
    instance_type: str
    instance_type_reason: str
    upstream: str
    image_alias: str
    stand_in: bool
    runtime: str
    ca_file: str
    plan_file: str
    members: list[dict[str, Any]]
    images: list[str]
    upstream_content: str
    registry: dict[str, str] = field(default_factory=dict)
    proxy: str = ""
    public_ca_file: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    runtime_kind: str = Runtime.snapd.value
    node_instance_type: str = ""

    def write(self, directory: Path) -> Path:
        return write_atomic(directory / STATE_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> LabState | None:
        try:
            return cls(**json.loads((directory / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def forget(name: str, root: Path | None = None) -> list[str]:
    """Remove the lab's directory (down: the lab is gone): lab.json, the plan written
    for it, and its CAs with their private keys, which must not outlive the lab. What
    was removed (for down's list)."""
    directory = state_dir(name, root)
    if not directory.exists():
        return []
    shutil.rmtree(directory)
    return [f"state {directory} (lab.json, plan, the lab CAs and their keys)"]


def spec_from_state(name: str, root: Path | None = None, slot: int | None = None) -> LabSpec:
    """The spec of an existing lab (its slot from lab.json unless given)."""
    st = LabState.read(state_dir(name, root))
    if slot is None:
        slot = st.slot if st else _slot_from_bridge(name)
    upstream = Upstream(st.upstream) if st else Upstream.simulated
    images = tuple(st.images) if st else LabSpec().images
    nodes = max(1, len([m for m in st.members if m["role"] == "node"])) if st else 1
    # A lab.json from before the no-snapd runtime was removed says "stand-in": its nodes
    # come down the same way.
    kinds = {r.value for r in Runtime}
    runtime = Runtime(st.runtime_kind) if st and st.runtime_kind in kinds else Runtime.snapd
    return LabSpec(name=name, slot=slot, upstream=upstream, images=images, nodes=nodes,
                   runtime=runtime)


def _slot_from_bridge(name: str) -> int:
    """The slot of a lab whose lab.json is gone, from its air-gapped bridge; else 0."""
    if not host.lxd_answers():
        return 0
    net = network_blocks(host.client()).get(LabSpec(name=name).airgap_bridge)
    if net is None:
        return 0
    offset = int(net.network_address) - int(LabSpec().lab_range.network_address)
    return max(0, offset // 512)
