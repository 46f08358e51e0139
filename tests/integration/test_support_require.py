"""need()/require_*: a missing prerequisite skips on a laptop and fails under CI=true."""

from __future__ import annotations

import pytest

from tests.support.require import need, require_binary

pytestmark = pytest.mark.integration


def test_skips_without_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-airgap is not installed"):
        require_binary("no-such-tool-airgap")


def test_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*daemon missing"):
        need(False, "daemon missing")
    need(True, "never shown")
    assert require_binary("sh").endswith("/sh")
