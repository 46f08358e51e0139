"""Reading a plan: strict YAML (no duplicate keys, bounded size and depth), then the
model; every problem as one line naming the file and the field. `invoke init`'s starter
plan is written from a template."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from airgap.errors import PlanError
from airgap.plan.defaults import DEFAULT_CHANNEL
from airgap.plan.model import Plan
from airgap.plan.settings import _CA_RESOLUTION, MAX_PLAN_BYTES, MAX_PLAN_DEPTH, Mode
from airgap.templates import render_template


def _loc(err: Any) -> str:
    out = ""
    for part in err["loc"]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _describe(err: Any) -> tuple[str, str]:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check its spelling; see examples/ or `invoke init`)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return _loc(err), msg


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Every problem, a misspelt (unknown) field first: it usually explains the rest."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    return [_describe(e) for e in errors]


def parse_plan(data: Any, *, source: str = "<plan>", base_dir: Path | None = None) -> Plan:
    if not isinstance(data, dict):
        raise PlanError(
            f"{source}: the plan must be a YAML mapping (keys such as access:, nodes:)",
            resolution="Start from `invoke init` or one of examples/*.yaml.",
        )
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        (loc, msg), *rest = _problems(exc)
        where = f"{source}: {loc}: " if loc else f"{source}: "
        also = "; ".join(f"{lo or '(plan)'}: {m}" for lo, m in rest[:3])
        if len(rest) > 3:
            also += f"; and {len(rest) - 3} more"
        raise PlanError(
            where + msg + (f" (also {also})" if also else ""),
            resolution="Fix that field in the plan and run the command again.",
        ) from None
    return plan.model_copy(update={"base_dir": base_dir or Path("."), "source": source})


class _PlanLoader(yaml.SafeLoader):
    """YAML as a plan may be: no key twice in one mapping, no absurd nesting.

    PyYAML keeps the last of two equal keys without a word (a second ``mirror:`` wins),
    and composes nested nodes recursively (a file nested thousands deep ends in a
    RecursionError of thousands of lines).
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_PLAN_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_PLAN_DEPTH} levels deep",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"duplicate key {key!r} (first at line {first.line + 1}; YAML would "
                    "silently keep the last one)",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Load and validate airgap.yaml; PlanError names the file and the field."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_PLAN_BYTES:
            raise PlanError(
                f"{p}: {p.stat().st_size} bytes is far too large for a plan "
                f"(limit {MAX_PLAN_BYTES // 1024} KiB)",
                resolution="Pass the airgap.yaml itself; list images in separate files "
                "(images.files).",
            )
        text = p.read_text()
    except FileNotFoundError:
        raise PlanError(
            f"{p}: plan file not found",
            resolution="Pass --plan PATH, or write a starter plan with `invoke init`.",
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise PlanError(f"{p}: cannot read the plan ({exc})",
                        resolution="Pass a readable UTF-8 YAML file with --plan "
                        "(`invoke init` writes one).") from None
    try:
        data = yaml.load(text, Loader=_PlanLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PlanError(
            f"{p}:{where}: not valid YAML: {problem}",
            resolution="Fix the YAML syntax (indentation, quoting) and run again.",
        ) from None
    plan = parse_plan(data, source=str(p), base_dir=p.resolve().parent)
    for f in plan.images.files:
        if not plan.resolve(f).is_file():
            raise PlanError(
                f"{p}: images.files: {f} does not exist",
                resolution="Create the workload image list or remove it from images.files.",
            )
    if plan.mirror and plan.mirror.ca_file and not plan.resolve(plan.mirror.ca_file).is_file():
        raise PlanError(
            f"{p}: mirror.ca_file: {plan.mirror.ca_file} does not exist",
            resolution=_CA_RESOLUTION,
        )
    return plan


def starter_plan(mode: Mode, name: str = "airgap.yaml") -> str:
    """A commented plan that validates as written, for `invoke init` (a jinja2 template:
    airgap/templates/airgap.yaml.j2)."""
    return render_template("airgap.yaml.j2", name=name, mode=mode.value,
                           channel=DEFAULT_CHANNEL)
