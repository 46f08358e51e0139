"""The one place that runs subprocesses on this machine.

argv lists only, never a shell string; stdin defaults to /dev/null; every command is
logged with ``shlex.join`` at debug level. Secrets travel in ``env``, which is never
logged.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO, Any

from airgap import binaries
from airgap.errors import AirgapError, CommandError

log = logging.getLogger(__name__)


def _prepare(argv: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None, verb: str
             ) -> tuple[list[str], dict[str, str] | None]:
    """argv as strings (logged), and the full environment when env adds to it."""
    args = [str(a) for a in argv]
    log.debug("%s: %s", verb, shlex.join(args))
    binaries.record(args[0])  # under CI: every binary run is checked against the list
    if env is None:
        return args, None
    return args, {**os.environ, **env}


def _not_found(argv: list[str], resolution: str | None) -> AirgapError:
    return AirgapError(
        f"Command not found: {argv[0]}",
        resolution=resolution or f"Install {argv[0]} or put it on PATH.",
    )


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    resolution: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv, capture text output; raise CommandError on failure when check."""
    args, full_env = _prepare(argv, env, "run")
    try:
        proc = subprocess.run(
            args,
            env=full_env,
            input=input.decode() if input is not None else None,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise _not_found(args, resolution) from exc
    except subprocess.TimeoutExpired as exc:
        raise AirgapError(
            f"Command timed out after {timeout} s: {shlex.join(args)}",
            resolution=resolution,
        ) from exc
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stdout, proc.stderr, resolution=resolution)
    return proc


def run_bytes(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> bytes:
    """Run argv and return raw stdout (for binary output such as unsquashfs -cat)."""
    args, full_env = _prepare(argv, env, "run")
    try:
        proc = subprocess.run(
            args, env=full_env, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=timeout, check=False,
        )
    except FileNotFoundError as exc:
        raise _not_found(args, None) from exc
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stdout.decode(errors="replace"),
                           proc.stderr.decode(errors="replace"))
    return proc.stdout


def popen(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv without waiting, for a caller that must watch it and may stop it
    (e.g. regsync while the mirror is polled). Same logging and env rules as run()."""
    args, full_env = _prepare(argv, env, "start")
    try:
        return subprocess.Popen(args, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr)
    except FileNotFoundError as exc:
        raise _not_found(args, None) from exc
