"""What preflight finds: a status per check, per node, with the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class CheckStatus(str, Enum):
    ok = "ok"
    warn = "warn"
    fail = "fail"
    skip = "skipped"


@dataclass
class Check:
    name: str
    status: CheckStatus
    detail: str = ""
    fix: str = ""


@dataclass
class NodeChecks:
    name: str
    role: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status is CheckStatus.fail]

    def get(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def named(self, prefix: str) -> list[Check]:
        return [c for c in self.checks if c.name.startswith(prefix)]


@dataclass
class PreflightReport:
    nodes: list[NodeChecks]

    @property
    def ok(self) -> bool:
        return not any(n.failed for n in self.nodes)

    def node(self, name: str) -> NodeChecks:
        return next(n for n in self.nodes if n.name == name)


def last_line(text: str) -> str:
    """The line that says what went wrong: curl's own "curl: (N) ..." line, else the last."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in lines:
        if line.startswith("curl: ("):
            return line
    return lines[-1] if lines else ""
