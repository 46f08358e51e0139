"""The proof's steps: each one timed, announced and recorded in the report, also when
it fails. Shared by the stand-in proof and the real-snap proof."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
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


class ProofReport(HasSteps, Protocol):
    errors: list[str]
    seconds: float


def fresh_lab(name: str, root: Path | None) -> None:
    """LXD up and initialised, and any leftovers of an earlier lab of this name gone
    (only then: down of a lab that was never up would take another lab's slot)."""
    from lab import host, lifecycle, state

    if not host.lxd_answers():
        host.setup_host()
    host.initialise(host.client())
    if (state.LabState.read(state.state_dir(name, root)) is not None
            or host.client().projects.exists(LabSpec(name=name).project)):
        lifecycle.down(state.spec_from_state(name, root), root=root)


def run_proof(spec: LabSpec, report: ProofReport, steps: Steps, root: Path | None, keep: bool,
              body: Callable[[Path], None], write: Callable[[], object]) -> None:
    """``body(work)`` in a fresh work directory; any error lands in the report; the lab
    comes down (unless ``keep``) and the report is written, also on failure."""
    import shutil
    import tempfile
    import time

    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"k8s-airgap-{spec.name}-"))
    try:
        body(work)
    except AirgapError as exc:
        report.errors.append(str(exc).splitlines()[0])
    except Exception as exc:  # reported, and the lab still comes down
        report.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if not keep:
            lab_down_step(steps, report.errors, spec, root)
            shutil.rmtree(work, ignore_errors=True)
        report.seconds = round(time.monotonic() - t0, 1)
        write()
