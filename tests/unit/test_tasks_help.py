"""Every task is documented: one-line help in `invoke --list`, every flag in `--help`."""

from __future__ import annotations

import re

import pytest

from tests.support.taskrun import run_task


def invoke(*args: str) -> str:
    proc = run_task(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def listed_tasks() -> dict[str, str]:
    """Task name -> its one-line help, from `invoke --list` (wrapped lines joined)."""
    tasks: dict[str, str] = {}
    current = None
    for line in invoke("--list").splitlines()[1:]:
        match = re.match(r"^  (\S+)(?:\s+(.*))?$", line)
        if match:
            current = match.group(1)
            tasks[current] = match.group(2) or ""
        elif line.strip() and current:
            tasks[current] += " " + line.strip()
    return tasks


TASKS = listed_tasks()


def test_list_has_the_foundation_tasks_each_with_help() -> None:
    assert {"render", "init", "version"} <= set(TASKS)
    undocumented = sorted(name for name, text in TASKS.items() if not text.strip())
    assert undocumented == []


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_flag_has_help(name: str) -> None:
    out = invoke("--help", name)  # `invoke TASK --help` too, except where a positional eats it
    options = out.split("Options:", 1)[1] if "Options:" in out else ""
    entries = re.findall(r"^  (-\S.*?)(?=^  -|\Z)", options, flags=re.M | re.S)
    for entry in entries:
        spec_and_help = re.split(r"\s{2,}", entry.strip(), maxsplit=1)
        assert len(spec_and_help) == 2 and spec_and_help[1].strip(), (
            f"invoke {name} --help: {spec_and_help[0]} has no help text"
        )


def test_task_help_form_works_for_every_task() -> None:
    """`invoke TASK --help` must show help for every task, also one with a positional."""
    for name in sorted(TASKS):
        out = invoke(name, "--help")
        assert "Usage:" in out, (name, out)
