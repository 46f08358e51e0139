"""Every external binary the product, the lab and the tests run, with where it comes from.

One list, ``airgap/data/binaries.toml``: `invoke lab.host` checks the lab's part of it
before anything starts, a test installs exactly `.ci/run`'s apt packages into a fresh
Debian 12 chroot and finds every apt-provided binary there, and under CI every binary
actually run (through ``airgap.process``, and in the test process itself) is recorded
and compared with the list, so a new binary cannot arrive unlisted.

Recording: when ``K8S_AIRGAP_RECORD_BINARIES`` names a file, the name of every program
started is appended to it, one per line (O_APPEND, one short write per line, so
concurrent processes do not interleave).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomllib

from airgap.errors import AirgapError

RECORD_ENV = "K8S_AIRGAP_RECORD_BINARIES"
LIST_FILE = "binaries.toml"
USERS = ("product", "lab", "tests")
_FIX = "Fix the entry in airgap/data/binaries.toml (the format is in its header)."


@dataclass(frozen=True)
class Binary:
    """One external program: its name, how it is installed, and who runs it."""

    key: str  # the list's entry (node binaries: node-NAME)
    name: str  # the program's file name
    source: str  # "apt:PACKAGE", "go:MODULE" (invoke tools), "pip:PACKAGE", "self"
    used_by: tuple[str, ...]
    why: str
    on: str = "host"  # or "node"
    optional: str = ""  # why it may be absent; .ci/run does not install it

    @property
    def apt_package(self) -> str | None:
        return self.source.removeprefix("apt:") if self.source.startswith("apt:") else None

    def install_hint(self) -> str:
        if self.apt_package:
            return f"apt-get install {self.apt_package}"
        if self.source.startswith("go:"):
            return "invoke tools"
        if self.source.startswith("pip:"):
            return f"pip install {self.source.removeprefix('pip:')}"
        return "reinstall k8s-airgap (pip install -e .)"


def load(text: str | None = None, source: str = LIST_FILE) -> dict[str, Binary]:
    """The list, by name; a malformed entry names the file and the entry."""
    if text is None:
        text = resources.files("airgap").joinpath("data", LIST_FILE).read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AirgapError(f"{source}: not TOML: {exc}", resolution=_FIX) from None
    out: dict[str, Binary] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise AirgapError(f"{source}: [{name}] must be a table",
                              resolution=_FIX)
        unknown = set(entry) - {"source", "used_by", "why", "on", "optional", "binary"}
        if unknown:
            raise AirgapError(f"{source}: [{name}] has unknown keys: {', '.join(sorted(unknown))}",
                              resolution=_FIX)
        on = entry.get("on", "host")
        if on not in ("host", "node"):
            raise AirgapError(f"{source}: [{name}].on must be host or node, not {on!r}",
                              resolution=_FIX)
        src, users, why = entry.get("source"), entry.get("used_by"), entry.get("why", "")
        if not isinstance(src, str) or src.split(":", 1)[0] not in ("apt", "go", "pip", "self"):
            raise AirgapError(f"{source}: [{name}].source must be apt:PKG, go:MOD, pip:PKG "
                              f"or self, not {src!r}",
                              resolution=_FIX)
        if (not isinstance(users, list) or not users
                or any(u not in USERS for u in users)):
            raise AirgapError(f"{source}: [{name}].used_by must list some of {USERS}",
                              resolution=_FIX)
        out[name] = Binary(name, str(entry.get("binary", name)), src, tuple(users), str(why),
                           on, str(entry.get("optional", "")))
    return out


def host_binaries(listed: dict[str, Binary] | None = None) -> dict[str, Binary]:
    """The host's programs, by file name."""
    listed = load() if listed is None else listed
    return {b.name: b for b in listed.values() if b.on == "host"}


def apt_packages(binaries: Iterable[Binary]) -> set[str]:
    return {b.apt_package for b in binaries if b.apt_package}


def program_name(argv0: str) -> str:
    """The list's name for a program as it was started: its basename; the running
    Python (any python3.X, a venv's python) is `python3`."""
    base = os.path.basename(str(argv0))
    if base.startswith("python"):
        return "python3"
    return base


def record(argv0: str | os.PathLike[str] | bytes) -> None:
    """Append the program's name to the record file, if recording is on."""
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    if isinstance(argv0, bytes):
        argv0 = argv0.decode(errors="replace")
    prog = os.fspath(argv0)
    if shutil.which(prog) is None:
        return  # not started at all: "Command not found" is its own error
    line = (program_name(prog) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def recorded(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def unlisted(names: Iterable[str], listed: dict[str, Binary] | None = None) -> list[str]:
    """The names run on the host that the list does not have."""
    host = host_binaries(listed)
    return sorted(n for n in set(names) if n not in host)


def missing(users: Sequence[str], listed: dict[str, Binary] | None = None,
            path: str | None = None) -> list[Binary]:
    """The host's listed, non-optional binaries for ``users`` that are not on PATH
    (apt-provided ones only: Go tools come from `invoke tools`, Python ones from pip)."""
    # PATH as this process has it: LXD, started from here, looks for dnsmasq on it too.
    search = path if path is not None else os.environ.get("PATH", "")
    return [
        b for b in host_binaries(listed).values()
        if b.apt_package and not b.optional and set(b.used_by) & set(users)
        and shutil.which(b.name, path=search) is None
    ]


def check(users: Sequence[str], listed: dict[str, Binary] | None = None,
          path: str | None = None) -> None:
    """Raise one error naming every missing binary and the package that provides it."""
    gone = missing(users, listed, path)
    if not gone:
        return
    names = ", ".join(f"{b.name} ({b.apt_package})" for b in gone)
    pkgs = " ".join(sorted(apt_packages(gone)))
    raise AirgapError(
        f"missing programs the {'/'.join(users)} needs: {names}",
        resolution=f"apt-get install --no-install-recommends {pkgs}",
    )


def install_audit_hook() -> None:
    """Record every subprocess this Python process starts, whoever starts it."""
    if not os.environ.get(RECORD_ENV):
        return

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "subprocess.Popen" and args:
            exe = args[0]
            argv = args[1]
            name = exe if exe else (argv[0] if isinstance(argv, (list, tuple)) and argv else argv)
            if isinstance(name, (str, bytes, os.PathLike)):
                record(name)
        elif event == "os.exec" and args:
            record(args[0])  # type: ignore[arg-type]

    sys.addaudithook(hook)
