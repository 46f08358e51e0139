"""Deploy's report as one table per node: step, result, detail."""

from __future__ import annotations

from rich.console import Console
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
        node_table(f"{n.name} ({n.role})",
                   ("step", "result", "detail"),
                   [(s.step, styled(s.status, _STYLE), s.detail) for s in n.steps])
        for n in report.nodes
    ]


def dangerous_line(report: DeployReport) -> str:
    """The loud line for snaps installed with --dangerous ("" if none were)."""
    named = [f"{n.name}: {', '.join(n.dangerous)}" for n in report.nodes if n.dangerous]
    if not named:
        return ""
    return ("WARNING: installed with --dangerous, not verified by snapd (its assertions "
            "are not signed by a key snapd trusts): " + "; ".join(named))


def print_report(report: DeployReport, errors: Console) -> list[str]:
    """The tables, each node's errors, the --dangerous warning and, if all went well,
    the summary line; the names of the nodes that failed."""
    out = Console()
    for table in report_tables(report):
        out.print(table)
    for n in report.nodes:
        for exc in n.errors:
            errors.print(f"[red]{n.name}[/red]: {exc}")
    if line := dangerous_line(report):
        errors.print(f"[bold yellow]{line}[/bold yellow]")
    failed = [n.name for n in report.nodes if n.failed]
    if not failed:
        out.print(f"Deployed {len(report.nodes)} node(s).")
    return failed
