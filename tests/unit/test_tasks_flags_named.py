"""Every `invoke TASK --flag` that a message, a docstring or the README names exists.

A resolution that names a flag the task does not have (`invoke sideload --check` once)
sends the user into a second error. And every task that checks signatures takes the
same --trusted-root/--no-signature-check.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from tests.support.taskrun import ROOT, run_task

MENTION = re.compile(r"`invoke ([a-z][a-z.-]*)([^`]*)`")
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def _sources() -> list[Path]:
    files = [ROOT / "tasks.py", ROOT / "README.md"]
    for top in ("airgap", "lab"):
        files += sorted((ROOT / top).rglob("*.py"))
    return files


def mentions() -> list[tuple[str, str, str]]:
    found = []
    for path in _sources():
        for m in MENTION.finditer(path.read_text()):
            for flag in FLAG.findall(m.group(2)):
                found.append((path.relative_to(ROOT).as_posix(), m.group(1), flag))
    return sorted(set(found))


@cache
def task_help(task: str) -> str:
    proc = run_task("--help", task)
    assert proc.returncode == 0, f"`invoke {task}` is named but is not a task: {proc.stderr}"
    return proc.stdout


def test_there_are_mentions_to_check() -> None:
    named = {(t, f) for _, t, f in mentions()}
    assert ("verify", "bundle") in named and len(named) > 20


@pytest.mark.parametrize(("where", "task", "flag"), mentions())
def test_a_named_flag_exists(where: str, task: str, flag: str) -> None:
    if flag == "help":
        return
    assert re.search(rf"--{re.escape(flag)}\b", task_help(task)), (
        f"{where} names `invoke {task} --{flag}`, which `invoke {task} --help` does not list"
    )


def _flag_help(task: str, flag: str) -> str:
    text = task_help(task)
    m = re.search(rf"--{flag}(?:=\S+)?\s+(.*?)(?=\n\s+-|\Z)", text, re.S)
    assert m, f"invoke {task} has no --{flag}"
    return " ".join(m.group(1).split())


@pytest.mark.parametrize("flag", ["trusted-root", "no-signature-check"])
def test_signature_checking_tasks_take_the_same_flags(flag: str) -> None:
    helps = {task: _flag_help(task, flag) for task in ("prepare", "verify", "deploy")}
    assert len(set(helps.values())) == 1, helps
