"""Skip on a laptop, fail in CI.

A developer without squid or root should still be able to run the rest of the suite,
but CI must never go green by skipping the tests that matter: with CI=true a missing
prerequisite is a failure.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _missing(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"CI=true and a test prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def need(condition: object, reason: str) -> None:
    """Skip (laptop) or fail (CI=true) with reason unless condition holds."""
    if not condition:
        _missing(reason)


def require_binary(name: str) -> str:
    """The full path of an executable on PATH, or skip/fail naming the Debian package."""
    path = shutil.which(name)
    need(path, f"{name} is not installed (see README: test prerequisites)")
    assert path is not None
    return path


def require_root() -> None:
    need(os.geteuid() == 0, "needs root (network namespaces, containerd, routes)")
