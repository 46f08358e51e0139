"""Deploy's report as one table per node: step, result, detail."""

from __future__ import annotations

from rich.table import Table

from airgap.deploy.report import DeployReport, StepStatus
from airgap.show import styled

_STYLE = {
    StepStatus.done: "green",
    StepStatus.changed: "cyan",
    StepStatus.skipped: "yellow",
    StepStatus.failed: "bold red",
    StepStatus.not_run: "dim",
}


def report_tables(report: DeployReport) -> list[Table]:
    """One rich Table per node."""
    tables = []
    for n in report.nodes:
        title = f"{n.name} ({n.role}{', runtime stand-in' if n.stand_in else ''})"
        t = Table(title=title, title_justify="left")
        t.add_column("step")
        t.add_column("result")
        t.add_column("detail", overflow="fold")
        for s in n.steps:
            t.add_row(s.step, styled(s.status, _STYLE), s.detail)
        tables.append(t)
    return tables
