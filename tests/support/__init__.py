"""Shared test infrastructure: real daemons (registry, containerd, squid) and namespaces.

Every helper starts a real Debian daemon with its own config in a per-test directory,
so tests from several engineers can run side by side on one machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

NETNS_DIR = Path("/run/netns")
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")

_CONNECT = (
    "import socket, sys\n"
    "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()\n"
)
_FREE_PORT = (
    "import socket, sys\n"
    "s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1]); s.close()\n"
)


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """argv run inside a named network namespace (nsenter, never `ip netns exec`)."""
    argv = [str(a) for a in argv]
    if netns is None:
        return argv
    return ["nsenter", f"--net={NETNS_DIR / netns}", *argv]


def free_port(host: str = "127.0.0.1", netns: str | None = None) -> int:
    """A port that is free right now on host (in netns if given)."""
    if netns is None:
        with socket.socket() as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    out = subprocess.run(
        in_netns(netns, [sys.executable, "-c", _FREE_PORT, host]),
        capture_output=True, text=True, check=True, timeout=30,
    )
    return int(out.stdout.strip())


def can_connect(host: str, port: int, netns: str | None = None) -> bool:
    """True when a TCP connection to host:port succeeds (from inside netns if given)."""
    if netns is None:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return False
        return True
    proc = subprocess.run(
        in_netns(netns, [sys.executable, "-c", _CONNECT, host, str(port)]),
        capture_output=True, timeout=30, check=False,
    )
    return proc.returncode == 0


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def spawn(
    argv: Sequence[str],
    log_file: Path,
    *,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a daemon in its own process group with stdout+stderr appended to log_file.

    Proxy variables are never inherited (a developer's proxy must not receive test
    traffic); pass them in env when a test wants them.
    """
    full_env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    if env:
        full_env.update(env)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes] = log_file.open("ab")
    try:
        return subprocess.Popen(
            in_netns(netns, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            env=full_env, cwd=cwd, start_new_session=True,
        )
    finally:
        out.close()


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
) -> None:
    """Poll ready() until it is true; fail early if proc exits, with the log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            log = tail(log_file) if log_file else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready\n{log}")
        if ready():
            return
        if time.monotonic() > deadline:
            log = tail(log_file) if log_file else ""
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{log}")
        time.sleep(0.1)


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the daemon's process group, then SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
