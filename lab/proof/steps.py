"""The proof's steps: each one timed, announced and recorded in the report, also when
it fails. Shared by the stand-in proof and the real-snap proof."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from airgap.plan import Mode
from lab.report import Report

Progress = Callable[[str], None]
MODES = (Mode.proxy, Mode.mirror, Mode.sideload)


def quiet(_: str) -> None:
    pass


class Steps:
    def __init__(self, report: Report, say: Progress) -> None:
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
