"""Preflight's report as one table per node: check, result, detail, fix."""

from __future__ import annotations

from rich.table import Table

from airgap.preflight.report import CheckStatus, PreflightReport
from airgap.show import node_table, styled

_STYLE = {
    CheckStatus.ok: "green",
    CheckStatus.warn: "yellow",
    CheckStatus.fail: "bold red",
    CheckStatus.skip: "dim",
}


def report_tables(report: PreflightReport) -> list[Table]:
    """One rich Table per node: check, result, detail, fix."""
    return [
        node_table(f"{n.name} ({n.role})", ("check", "result", "detail", "fix"),
                   [(c.name, styled(c.status, _STYLE), c.detail, c.fix) for c in n.checks])
        for n in report.nodes
    ]
