"""The one error type users see.

Every failure a user can act on is an ``AirgapError`` with a one-line ``brief``,
optional ``details`` (what was found) and a ``resolution`` (what to do). Tasks turn
it into a clean message and a non-zero exit instead of a traceback.
"""

from __future__ import annotations


class AirgapError(Exception):
    """A user-facing error: what went wrong (brief), the facts (details), the fix.

    A subclass whose errors share one fix sets ``default_resolution``; it applies when
    the raise gives none.
    """

    default_resolution: str | None = None

    def __init__(
        self, brief: str, *, details: str | None = None, resolution: str | None = None
    ) -> None:
        super().__init__(brief)
        self.brief = brief
        self.details = details
        self.resolution = resolution if resolution is not None else self.default_resolution

    def __str__(self) -> str:
        parts = [self.brief]
        if self.details:
            parts.append(self.details.rstrip())
        if self.resolution:
            parts.append(f"Resolution: {self.resolution}")
        return "\n".join(parts)


class PlanError(AirgapError):
    """The plan (airgap.yaml) or a file it names is invalid."""


class ImageListError(AirgapError):
    """An image list (images.txt, list-images output, workload file) is invalid."""


class CommandError(AirgapError):
    """A command exited non-zero; carries argv, exit code, stdout and stderr."""

    default_resolution = ("Read the command's output above; run the task again with --debug "
                          "to see every command it runs.")

    def __init__(
        self,
        argv: list[str],
        returncode: int,
        stdout: str,
        stderr: str,
        *,
        brief: str | None = None,
        resolution: str | None = None,
        where: str = "",
    ) -> None:
        import shlex

        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        place = f" on {where}" if where else ""
        details = f"command: {shlex.join(argv)}\nexit code: {returncode}"
        if stdout.strip():
            details += f"\nstdout:\n{_tail(stdout)}"
        if stderr.strip():
            details += f"\nstderr:\n{_tail(stderr)}"
        super().__init__(
            brief or f"Command {argv[0]!r} failed{place} (exit {returncode})",
            details=details,
            resolution=resolution,
        )


def _tail(text: str, lines: int = 20) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join("  " + line for line in kept)
