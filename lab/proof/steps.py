"""The proof's steps: each one timed, announced and recorded in the report, also when
it fails. Shared by the stand-in proof and the real-snap proof."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from airgap.plan import Mode
from airgap.progress import Say
from lab.report import Report

MODES = (Mode.proxy, Mode.mirror, Mode.sideload)


class Steps:
    def __init__(self, report: Report, say: Say) -> None:
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
