"""The Node protocol every step takes, its result type, and observations shared by
deploy and preflight (has a command, reads a file)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from airgap.errors import CommandError


@dataclass(frozen=True)
class RunResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@runtime_checkable
class Node(Protocol):
    """Runs commands and moves files on one machine."""

    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> RunResult: ...

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        """Copy a local file to the node, creating parent directories."""
        ...

    def write(self, remote: str, data: bytes, mode: int = 0o644) -> None:
        """Write bytes to a file on the node, creating parent directories."""
        ...

    def get(self, remote: str) -> bytes:
        """Read a file from the node."""
        ...


def check_result(node_name: str, result: RunResult) -> RunResult:
    if result.returncode != 0:
        raise CommandError(
            result.argv, result.returncode, result.stdout, result.stderr, where=node_name
        )
    return result


def shell_quote(argv: Sequence[str]) -> str:
    return shlex.join([str(a) for a in argv])


# --- observations shared by deploy and preflight ------------------------------------

# dash's `command -v` exits 127 when the name is missing, which transports report as
# "command not found" (an error); exit 1 keeps it an ordinary answer.
HAS_COMMAND_SCRIPT = 'command -v "$1" >/dev/null || exit 1'


def has_command(node: Node, name: str) -> bool:
    """Whether ``name`` is on the node's PATH (no exception for a missing binary)."""
    return node.run(["sh", "-c", HAS_COMMAND_SCRIPT, "sh", name], check=False).ok


def read_text(node: Node, path: str) -> str | None:
    """A text file's content on the node, or None when it does not exist."""
    res = node.run(["cat", path], check=False)
    return res.stdout if res.ok else None


def node_tmp(path: str, node: Node) -> str:
    """``path`` made unique to the node and this run: two plan nodes may share a
    filesystem (namespaces of one host in the tests, or two names for one machine), and
    their checks run at once."""
    stem, _, ext = path.rpartition(".")
    return f"{stem}-{node.name}-{os.getpid()}.{ext}"
