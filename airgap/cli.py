"""What every command-line entry point shares: user errors as one clean message, logging.

Used by tasks.py and lab/tasks.py, so that both collections fail the same way: an
AirgapError becomes `Error: ...` on stderr and exit 1, never a traceback. The library
does not know invoke: a UserExit is a SystemExit, which invoke lets through and Python
prints to stderr as it is, exactly as invoke's own Exit would be printed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airgap.errors import AirgapError


class UserExit(SystemExit):
    """A clean failure for the user: the message on stderr, exit status 1."""

    status = 1  # what Python exits with for a SystemExit carrying a message

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn AirgapError into `Error: ...` on stderr and exit 1."""
    try:
        yield
    except AirgapError as exc:
        raise UserExit(f"Error: {exc}") from None


def configure_logging(debug: bool) -> None:
    """--debug logs every command run (secrets travel in env or stdin, never logged)."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# Every task that checks snap assertion signatures takes these two flags, with this help.
TRUST_HELP = {
    "trusted_root": "Root account-key assertion to trust instead of Canonical's (a brand "
    "store, the lab, tests).",
    "no_signature_check": "Do not check assertion signatures (loud warning; last resort).",
}


# Every task on the air-gapped side that reads a bundle takes these two, with this help.
SIGNER_HELP = {
    "allowed_signers": "ssh-keygen allowed-signers file: who may sign bundles (principal, "
    "then the public key, one per line; see ssh-keygen(1) ALLOWED SIGNERS).",
    "allow_unsigned": "Accept a bundle with no signature (loud warning; never one whose "
    "signature fails).",
}


def trust_flags(trusted_root: str | None, no_signature_check: bool) -> tuple[Path | None, bool]:
    """(--trusted-root as a Path or None, whether signatures are checked): a trusted root
    given with --no-signature-check still checks, against that root."""
    check = not (no_signature_check and not trusted_root)
    return (Path(trusted_root) if trusted_root else None), check
