"""Options for the end-to-end tests (`nox -s e2e -- --k8s-snap`)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--k8s-snap",
        action="store_true",
        default=False,
        help="Full proof with the real k8s snap: needs snapd with Snap Store access, an LXD "
        "that runs VMs, internet access for the lab's proxy, and K8S_AIRGAP_IMAGE_SERVER (an "
        "LXD simplestreams server for the Ubuntu VM image). Where that is impossible, the "
        "proof stops with an error naming every missing prerequisite.",
    )
