"""invoke tasks: thin wrappers that parse flags, call airgap/ and lab/, print results.

All logic lives in the library; a task loads the plan, calls one function and turns
an AirgapError into a clean message and a non-zero exit (never a traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from invoke import Collection, Exit, task
from rich.console import Console

from airgap.errors import AirgapError

console = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn AirgapError into `Error: ...` on stderr and exit 1."""
    try:
        yield
    except AirgapError as exc:
        raise Exit(f"Error: {exc}", code=1) from None


def _verbosity(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@task(help={"debug": "Log every command run (secrets are never logged)."})
def version(c, debug=False):
    """Print the k8s-airgap version and the tools it finds."""
    _verbosity(debug)
    from airgap import __version__

    print(f"k8s-airgap {__version__}")


ns = Collection(version)
