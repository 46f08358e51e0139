"""A pytest plugin: under CI, every program a test run starts must be on the list.

On at CI=true (or when K8S_AIRGAP_RECORD_BINARIES already names a file): every program
started by this process (an audit hook: subprocess, os.exec) and by its children
(through airgap.process, which records to the same file via the environment) is
appended to one file; at the end of the session any name not in
airgap/data/binaries.toml fails the run, named. tests/conftest.py loads it;
`pytest -p tests.support.binaryrecord` loads it anywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from airgap import binaries


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") != "true" and not os.environ.get(binaries.RECORD_ENV):
        return
    if not os.environ.get(binaries.RECORD_ENV):
        fd, path = tempfile.mkstemp(prefix="k8s-airgap-binaries-", suffix=".txt")
        os.close(fd)
        os.environ[binaries.RECORD_ENV] = path  # inherited by every child process
    binaries.install_audit_hook()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(binaries.RECORD_ENV)
    if not path or hasattr(session.config, "workerinput"):
        return
    ran = binaries.recorded(Path(path))
    extra = binaries.unlisted(ran)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if extra:
        msg = (f"binaries run but not listed in airgap/data/binaries.toml: {', '.join(extra)} "
               "(add each with its Debian package, and to .ci/run's APT_PACKAGES)")
        if reporter is not None:
            reporter.write_line(f"FAILED {msg}", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"binaries run: {len(ran)}, all listed in airgap/data/binaries.toml")
