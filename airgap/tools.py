"""regsync and regctl: where to find them, how to install them, how to run them.

Pinned: installed with `go install github.com/regclient/regclient/cmd/NAME@TAG` into
the project-local bin directory (``.bin/``, or $AIRGAP_BIN), as the procedure says
(with a pinned tag instead of @latest). Every run goes through ``process.run``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
            f"Run `invoke tools`, or by hand: GOBIN={bin_dir()} go install "
            f"{REGCLIENT_MODULE}/cmd/{name}@{REGCLIENT_VERSION}"
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


_TAG_RE = re.compile(r"^VCSTag:\s*(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class ToolStatus:
    name: str
    path: Path | None
    version: str | None
    wanted: str = REGCLIENT_VERSION

    @property
    def ok(self) -> bool:
        return self.path is not None and self.version == self.wanted

    def describe(self) -> str:
        """One line for `invoke version`: where the tool is and which version it reports."""
        if self.path is None:
            return f"{self.name}: not installed (invoke tools)"
        note = "" if self.ok else f", pinned {self.wanted} (invoke tools --force)"
        return f"{self.name}: {self.path} ({self.version or 'version unknown'}{note})"


def tool_version(path: Path) -> str | None:
    """The release tag a regclient binary reports (`NAME version`), None if it has none."""
    proc = process.run([str(path), "version"], check=False, timeout=30)
    if proc.returncode != 0:
        return None
    found = _TAG_RE.search(proc.stdout)
    return found.group(1) if found else None


def check_tools(names: Sequence[str] = TOOLS) -> list[ToolStatus]:
    """Where each tool is and which version it is, without failing."""
    out = []
    for name in names:
        try:
            path = find_tool(name)
        except AirgapError:
            out.append(ToolStatus(name, None, None))
            continue
        out.append(ToolStatus(name, path, tool_version(path)))
    return out


def install_tools(
    *,
    version: str = REGCLIENT_VERSION,
    target: Path | None = None,
    force: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> list[ToolStatus]:
    """`go install` the pinned regsync and regctl into the project's bin directory.

    Idempotent: tools already there at the pinned version are kept (a re-run costs
    two `version` calls), unless force. After installing, each binary's reported tag
    must equal the pin, or the install is reported as failed.
    """
    dest = target or bin_dir()
    wanted = [
        name for name in TOOLS
        if force or tool_version_at(dest / name) != version
    ]
    if wanted:
        go = shutil.which("go")
        if go is None:
            raise AirgapError(
                "go is not installed; it is needed to install regsync and regctl",
                resolution=(
                    "Install Go (https://go.dev/dl/, or `apt-get install golang-go` if it is "
                    "recent enough), or copy prebuilt regsync and regctl "
                    f"{version} binaries into {dest}."
                ),
            )
        dest.mkdir(parents=True, exist_ok=True)
        go_env = {"GOBIN": str(dest), **(env or {})}
        pkgs = [f"{REGCLIENT_MODULE}/cmd/{name}@{version}" for name in wanted]
        process.run(
            [go, "install", *pkgs], env=go_env, timeout=timeout,
            resolution=(
                "Check that the Go module proxy (GOPROXY) is reachable from this machine and "
                f"that {version} is a regclient release tag."
            ),
        )
    result = []
    for name in TOOLS:
        path = dest / name
        got = tool_version_at(path)
        if got != version:
            raise AirgapError(
                f"{path} reports version {got or 'unknown'}, expected {version}",
                resolution=f"Run `invoke tools --force` to reinstall {name} {version}.",
            )
        result.append(ToolStatus(name, path, got, version))
    return result


def tool_version_at(path: Path) -> str | None:
    """tool_version for a path that may not exist."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        return None
    return tool_version(path)
