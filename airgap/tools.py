"""regsync and regctl: where to find them, how to install them, how to run them.

Pinned: installed with `go install github.com/regclient/regclient/cmd/NAME@TAG` into
the project-local bin directory (``.bin/``, or $AIRGAP_BIN), as the procedure says
(with a pinned tag instead of @latest). Every run goes through ``process.run``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from airgap import process
from airgap.errors import AirgapError

REGCLIENT_MODULE = "github.com/regclient/regclient"
REGCLIENT_VERSION = "v0.11.7"
TOOLS = ("regsync", "regctl")


def bin_dir() -> Path:
    """The project-local directory `invoke tools` installs into."""
    env = os.environ.get("AIRGAP_BIN")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / ".bin"


def find_tool(name: str) -> Path:
    """The path of regsync or regctl: the project's bin directory first, then PATH."""
    local = bin_dir() / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    if found:
        return Path(found)
    raise AirgapError(
        f"{name} is not installed",
        details=f"looked in {bin_dir()} and on PATH",
        resolution=(
            "Run `invoke tools` (it runs `go install "
            f"{REGCLIENT_MODULE}/cmd/{name}@{REGCLIENT_VERSION}`)."
        ),
    )


def run_tool(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run regsync/regctl with args. Credentials go in env, never in args."""
    return process.run([str(find_tool(name)), *args], env=env, check=check, timeout=timeout)
