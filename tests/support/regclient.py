"""A private HOME for regsync/regctl in tests: the user's ~/.docker and ~/.regctl are
never read or written. Import the fixture into a test module to use it (autouse)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap import tools
from airgap.errors import AirgapError
from tests.support.require import need


@pytest.fixture(autouse=True)
def private_regclient_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    try:
        tools.find_tool("regsync")
    except AirgapError as exc:
        need(False, f"regsync not installed ({exc}); run `invoke tools`")
