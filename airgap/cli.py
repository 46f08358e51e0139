"""What every invoke task shares: user errors as one clean message, and logging.

Used by tasks.py and lab/tasks.py, so that both collections fail the same way: an
AirgapError becomes `Error: ...` on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from invoke import Exit  # type: ignore[attr-defined]

from airgap.errors import AirgapError


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn AirgapError into `Error: ...` on stderr and exit 1."""
    try:
        yield
    except AirgapError as exc:
        raise Exit(f"Error: {exc}", code=1) from None


def configure_logging(debug: bool) -> None:
    """--debug logs every command run (secrets travel in env or stdin, never logged)."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
