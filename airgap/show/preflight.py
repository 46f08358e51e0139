"""Preflight's report as one table per node: check, result, detail, fix."""

from __future__ import annotations

from rich.table import Table

from airgap.preflight.report import CheckStatus, PreflightReport
from airgap.show import styled

_STYLE = {
    CheckStatus.ok: "green",
    CheckStatus.warn: "yellow",
    CheckStatus.fail: "bold red",
    CheckStatus.skip: "dim",
}


def report_tables(report: PreflightReport) -> list[Table]:
    """One rich Table per node: check, result, detail, fix."""
    tables = []
    for n in report.nodes:
        t = Table(title=f"{n.name} ({n.role})", title_justify="left")
        t.add_column("check")
        t.add_column("result")
        t.add_column("detail", overflow="fold")
        t.add_column("fix", overflow="fold")
        for c in n.checks:
            t.add_row(c.name, styled(c.status, _STYLE), c.detail, c.fix)
        tables.append(t)
    return tables
