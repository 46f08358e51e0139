"""Test sessions. `nox -s tests` is fast and needs nothing; the others need daemons.

Sessions that need real daemons (integration, e2e) are written so that under CI
(CI=true) a missing daemon fails the run instead of skipping.
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.3.2"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PY = "3.11"
CODE = ["airgap", "lab", "tasks.py", "noxfile.py", "tests", "bench"]


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff on everything."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", *CODE)


@nox.session(python=PY)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the library, the lab, the tasks and the benchmarks."""
    _install(session)
    session.run("mypy", "airgap", "lab", "tasks.py", "bench")


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """Unit tests: no network, no daemons."""
    _install(session)
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session(python=PY)
def integration(session: nox.Session) -> None:
    """Real registry, squid, containerd, regclient on loopback and in namespaces (root)."""
    _install(session)
    session.run("pytest", "tests/integration", "-m", "integration", *session.posargs)


@nox.session(python=PY, default=False)
def e2e(session: nox.Session) -> None:
    """The LXD lab, all three image-access modes, with a report (opt-in)."""
    _install(session)
    session.run("pytest", "tests/e2e", "-m", "e2e", *session.posargs)


@nox.session(python=PY, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: print figures, assert nothing about speed (opt-in)."""
    _install(session)
    names = session.posargs or ["verify", "trust", "resolve", "mirror", "sideload", "fullgap",
                                "delta", "preflight", "lab"]
    for name in names:
        session.run("python", "-m", f"bench.{name}")
