"""Deploy's report as one table per node: step, result, detail."""

from __future__ import annotations

from rich.table import Table

from airgap.deploy.report import DeployReport, StepStatus
from airgap.show import node_table, styled

_STYLE = {
    StepStatus.done: "green",
    StepStatus.changed: "cyan",
    StepStatus.skipped: "yellow",
    StepStatus.failed: "bold red",
    StepStatus.not_run: "dim",
}


def report_tables(report: DeployReport) -> list[Table]:
    """One rich Table per node."""
    return [
        node_table(f"{n.name} ({n.role}{', runtime stand-in' if n.stand_in else ''})",
                   ("step", "result", "detail"),
                   [(s.step, styled(s.status, _STYLE), s.detail) for s in n.steps])
        for n in report.nodes
    ]
