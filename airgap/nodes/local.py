"""This machine as a Node, optionally inside a network namespace."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airgap import process
from airgap.fileio import write_atomic
from airgap.nodes.base import RunResult, check_result


@dataclass
class LocalNode:
    """This machine, or a network namespace on it (``netns``: a name in /run/netns).

    Namespaces are entered with nsenter, not ``ip netns exec``, which remounts /sys
    and breaks runc (FACTS).
    """

    name: str = "local"
    netns: str | None = None
    sudo: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    def _wrap(self, argv: Sequence[str]) -> list[str]:
        out = [str(a) for a in argv]
        if self.netns:
            out = ["nsenter", f"--net=/run/netns/{self.netns}", "--", *out]
        if self.sudo:
            out = ["sudo", "-n", *out]
        return out

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        full_env = {**self.extra_env, **(env or {})}
        proc = process.run(
            self._wrap(argv), env=full_env or None, input=input, check=False, timeout=timeout
        )
        result = RunResult(list(map(str, argv)), proc.returncode, proc.stdout, proc.stderr)
        return check_result(self.name, result) if check else result

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        dest = Path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(local, tmp)
        tmp.chmod(mode)
        tmp.replace(dest)

    def write(self, remote: str, data: bytes, mode: int = 0o644) -> None:
        write_atomic(remote, data, mode)

    def get(self, remote: str) -> bytes:
        return Path(remote).read_bytes()

    def __str__(self) -> str:
        return self.name if not self.netns else f"{self.name} (netns {self.netns})"


