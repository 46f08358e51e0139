"""The proof report: what `invoke lab.prove` and `nox -s e2e` show a reader.

One record per (mode, node, image) pull, the isolation evidence per node, the negative
cases, whether the runtime was the real k8s snap or the stand-in, and the tool
versions. With the real snap also the cluster (every node Ready, its kubelet version)
and the workload pod per node (phase, image, the image ID kubelet recorded).
Written as JSON (for machines) and Markdown that reads on its own.
Pure: building and formatting only; the scenario does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


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


def to_markdown(report: Report) -> str:
    verdict = "PASSED" if report.ok else "FAILED"
    out = [
        f"# k8s-airgap lab proof: {verdict}",
        "",
        f"- Lab: `{report.lab}`, started {report.started}, took {report.seconds:.0f} s",
        f"- Runtime on the nodes: **{report.runtime}**",
    ]
    if report.stand_in:
        out.append(
            "- The nodes ran the runtime stand-in (Debian's containerd as "
            "`snap.k8s.containerd.service` at the snap's paths), because the `k8s` snap "
            "cannot be downloaded here. This proves image access through each mode, not "
            "the snap itself."
        )
    else:
        out.append(
            "- The nodes ran the **real k8s snap**, installed offline from the bundle on LXD "
            "VMs: bootstrap, join, every node Ready, and a workload pod per node whose image "
            "came through the mode, with no route to the internet."
        )
    if report.snaps:
        out.append(f"- Snaps in the bundle: **{report.snaps}**")
    out += [f"- {note}" for note in report.notes]
    out.append(f"- Nodes: {', '.join(report.nodes)}")
    out.append(f"- Images ({len(report.images)}): " + ", ".join(f"`{i}`" for i in report.images))
    if report.tools:
        out.append("- Tools: " + ", ".join(f"{k} {v}" for k, v in sorted(report.tools.items())))
    out += ["", "## Modes", "", "| mode | result | pulls ok | time (s) |", "|---|---|---|---|"]
    for mode in report.modes:
        rows = [p for p in report.pulls if p.mode == mode]
        good = sum(p.ok for p in rows)
        secs = sum(p.seconds for p in rows)
        result = "ok" if report.mode_ok(mode) else "FAILED"
        out.append(_row(mode, result, f"{good}/{len(rows)}", f"{secs:.1f}"))
    out += [
        "",
        "## Every image on every node, through the runtime's CRI (as kubelet would)",
        "",
        "| mode | node | image | result | digest | time (s) | bytes | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in report.pulls:
        out.append(
            f"| {p.mode} | {p.node} | `{p.image}` | {'ok' if p.ok else 'FAILED'} | "
            f"`{p.digest[:19]}` | {p.seconds:.2f} | {_size(p.bytes)} | {_cell(p.detail)} |"
        )
    if report.cluster:
        out += ["", "## Cluster (`k8s kubectl get node -o json` after each mode's deploy)", "",
                "| mode | node | Ready | kubelet | detail |", "|---|---|---|---|---|"]
        for c in report.cluster:
            out.append(_row(c.mode, c.node, "yes" if c.ready else "NO", c.version or "-",
                            c.detail))
    if report.pods:
        out += ["", "## Workload pod per node (image pulled offline, IfNotPresent)", "",
                "| mode | node | pod | image | phase | result | image ID | time (s) | detail |",
                "|---|---|---|---|---|---|---|---|---|"]
        for pod in report.pods:
            out.append(_row(pod.mode, pod.node, pod.pod, f"`{pod.image}`", pod.phase,
                            "ok" if pod.ok else "FAILED", f"`{pod.image_id}`",
                            f"{pod.seconds:.1f}", pod.detail))
    out += ["", "## Isolation", "", "| node | check | result | exit | evidence |",
            "|---|---|---|---|---|"]
    for i in report.isolation:
        result = i.outcome or ("ok" if i.ok else "FAILED")
        out.append(_row(i.node, i.check, result if i.ok else result.upper(),
                        "-" if i.exit_code is None else str(i.exit_code), i.evidence))
    out += [
        "",
        "## Negative cases (each must fail cleanly)",
        "",
        "| mode | case | failed as expected | time (s) | message |",
        "|---|---|---|---|---|",
    ]
    for n in report.negatives:
        out.append(_row(n.mode, n.case, "yes" if n.failed_as_expected else "NO",
                        f"{n.seconds:.2f}", n.message))
    if report.errors:
        out += ["", "## Errors", ""] + [f"- {_cell(e)}" for e in report.errors]
    if report.steps:
        out += ["", "## Steps", "", "| step | seconds | detail |", "|---|---|---|"]
        for s in report.steps:
            out.append(f"| {_cell(str(s.get('step', '')))} | {float(s.get('seconds', 0)):.1f} | "
                       f"{_cell(str(s.get('detail', '')))} |")
    return "\n".join(out) + "\n"
