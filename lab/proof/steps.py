"""The proof's steps: each one timed, announced and recorded in the report, also when
it fails. Shared by the stand-in proof and the real-snap proof."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from airgap.errors import AirgapError
from airgap.plan import Mode
from airgap.progress import Say
from lab.topology import LabSpec

MODES = (Mode.proxy, Mode.mirror, Mode.sideload)


class HasSteps(Protocol):
    """A report that records steps (the proofs' reports)."""

    steps: list[dict[str, Any]]


class Steps:
    def __init__(self, report: HasSteps, say: Say) -> None:
        self.report, self.say = report, say

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        self.say(name)
        row: dict[str, Any] = {"step": name, "seconds": 0.0, "detail": ""}
        t = time.monotonic()
        try:
            yield row
        finally:
            row["seconds"] = round(time.monotonic() - t, 2)
            self.report.steps.append(row)


def lab_down_step(steps: Steps, errors: list[str], spec: LabSpec, root: Path | None) -> None:
    """Bring the proof's lab down as a step of its own; a failure is one more error."""
    from lab import lifecycle

    with steps.step("lab down") as row:
        try:
            res = lifecycle.down(spec, root=root)
            row["detail"] = f"{len(res.removed)} objects removed"
        except AirgapError as exc:
            errors.append(f"lab down: {exc.brief}")
