"""What deploy did, per node and step: the data the tasks show and the lab checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from airgap.errors import AirgapError


class StepStatus(str, Enum):
    done = "done"  # observed in place; nothing issued
    changed = "changed"  # applied now
    skipped = "skipped"  # deliberately not run; the detail says why
    failed = "failed"
    not_run = "not run"  # an earlier failure on this node (or the cluster) prevents it


@dataclass
class StepResult:
    step: str
    status: StepStatus
    detail: str = ""


@dataclass
class NodeReport:
    name: str
    role: str
    steps: list[StepResult] = field(default_factory=list)
    errors: list[AirgapError] = field(default_factory=list)
    # Snaps installed with --dangerous: snapd did not trust their assertions.
    dangerous: list[str] = field(default_factory=list)

    def add(self, step: str, status: StepStatus, detail: str = "") -> None:
        self.steps.append(StepResult(step, status, detail))

    @property
    def failed(self) -> bool:
        return any(s.status is StepStatus.failed for s in self.steps)

    def status_of(self, step: str) -> StepStatus | None:
        for s in self.steps:
            if s.step == step:
                return s.status
        return None


@dataclass
class DeployReport:
    nodes: list[NodeReport]

    @property
    def ok(self) -> bool:
        return not any(n.failed for n in self.nodes)

    def node(self, name: str) -> NodeReport:
        return next(n for n in self.nodes if n.name == name)
