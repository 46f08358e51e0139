"""The proof report: what `invoke lab.prove` and `nox -s e2e` show a reader.

One record per (mode, node, image) pull, the isolation evidence per node, the negative
cases, whether the runtime was the real k8s snap or the stand-in, and the tool
versions. With the real snap also the cluster (every node Ready, its kubelet version)
and the workload pod per node (phase, image, the image ID kubelet recorded).
Written as JSON (for machines) and Markdown that reads on its own (a jinja2 template,
lab/templates/e2e-report.md.j2).
Pure: building and formatting only; the proof (lab/proof) does the I/O.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import jinja2

MARKDOWN_TEMPLATE = "e2e-report.md.j2"


@dataclass
class PullRecord:
    mode: str
    node: str
    image: str
    ok: bool
    digest: str = ""
    expected: str = ""
    seconds: float = 0.0
    bytes: int = 0
    detail: str = ""


PROVED, FAILED, NOT_CHECKED = "proved", "failed", "could not check"


@dataclass
class IsolationRecord:
    """One piece of isolation evidence, with the raw facts it rests on.

    ``outcome``: "proved" (the expected failure was seen: exit code and message),
    "failed" (the node got through), or "could not check" (the tool is missing, was
    killed, or answered in a way that proves nothing). Only "proved" is ok.
    """

    node: str
    check: str
    ok: bool
    evidence: str
    outcome: str = ""
    command: str = ""
    exit_code: int | None = None
    output: str = ""


@dataclass
class NegativeRecord:
    mode: str
    case: str
    failed_as_expected: bool
    message: str
    seconds: float = 0.0


@dataclass
class ClusterNodeRecord:
    """One node of `k8s kubectl get node -o json` after a mode's deploy."""

    mode: str
    node: str
    ready: bool
    version: str = ""
    detail: str = ""


@dataclass
class PodRecord:
    """The workload pod on one node: its image pulled offline (IfNotPresent) by kubelet."""

    mode: str
    node: str
    pod: str
    image: str
    phase: str
    ok: bool
    image_id: str = ""
    seconds: float = 0.0
    detail: str = ""


@dataclass
class SnapRecord:
    """One row of `snap list` on a node after the proof's deploys."""

    name: str
    version: str
    rev: str
    notes: str  # confinement and hold, as snapd prints them ("classic,held")


@dataclass
class SnapdRecord:
    """snapd on one node: its version, what `snap list` shows, the runtime's unit."""

    node: str
    snapd: str
    unit: str  # systemctl is-active snap.k8s.containerd.service
    snaps: list[SnapRecord] = field(default_factory=list)


@dataclass
class DeployCase:
    """`invoke deploy` run again with the same, an older and a newer k8s in the bundle."""

    case: str
    expected: str
    ok: bool
    detail: str


@dataclass
class Report:
    lab: str
    runtime: str
    stand_in: bool
    started: str
    seconds: float = 0.0
    tools: dict[str, str] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    pulls: list[PullRecord] = field(default_factory=list)
    isolation: list[IsolationRecord] = field(default_factory=list)
    negatives: list[NegativeRecord] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    snaps: str = ""
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cluster: list[ClusterNodeRecord] = field(default_factory=list)
    pods: list[PodRecord] = field(default_factory=list)
    snapd: list[SnapdRecord] = field(default_factory=list)
    deploy_cases: list[DeployCase] = field(default_factory=list)
    # What ran for real on the nodes, and what the lab stood in for.
    real_parts: list[str] = field(default_factory=list)
    stand_in_parts: list[str] = field(default_factory=list)

    @property
    def real_snap(self) -> bool:
        return not self.stand_in

    @property
    def ok(self) -> bool:
        return (
            not self.errors
            and bool(self.pulls)
            and all(p.ok for p in self.pulls)
            and all(i.ok for i in self.isolation)
            and all(n.failed_as_expected for n in self.negatives)
            and all(c.ready for c in self.cluster)
            and all(p.ok for p in self.pods)
            and all(d.unit == "active" for d in self.snapd)
            and all(c.ok for c in self.deploy_cases)
            and (not self.real_snap or all(self._cluster_proven(m) for m in self.modes))
        )

    def _cluster_proven(self, mode: str) -> bool:
        nodes = [c for c in self.cluster if c.mode == mode]
        pods = [p for p in self.pods if p.mode == mode]
        return bool(nodes) and bool(pods) and all(c.ready for c in nodes) and all(
            p.ok for p in pods)

    def mode_ok(self, mode: str) -> bool:
        rows = [p for p in self.pulls if p.mode == mode]
        good = bool(rows) and all(p.ok for p in rows)
        return good and (not self.real_snap or self._cluster_proven(mode))


def to_json(report: Report) -> str:
    data = asdict(report)
    data["ok"] = report.ok
    return json.dumps(data, indent=2) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _size(n: int) -> str:
    if n <= 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lab", "templates"),
        autoescape=False,  # Markdown, not HTML: cells are escaped by the `cell` filter
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(cell=_cell, size=_size, fmt=_fmt)
    env.globals["float"] = float
    return env


def to_markdown(report: Report) -> str:
    """The report for a reader: lab/templates/e2e-report.md.j2."""
    return environment().get_template(MARKDOWN_TEMPLATE).render(report=report)
