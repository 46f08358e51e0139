"""The k8s channel k8s-airgap defaults to, and the image list that matches it: one place.

`invoke init` writes DEFAULT_CHANNEL; `invoke render` and `invoke preflight` use the
image list when there is no bundle (once `invoke prepare` has run, the images.lock
read from the snap's own images.txt wins). The list is what k8sd registers for
1.36 (canonical/k8sd pkg/k8sd/features/*/chart.go and register.go, and
pkg/k8sd/setup/containerd.go for pause; k8s-snap's release-1.36 builds k8sd from main,
read 2026-08-21, commit 1417866d). When either changes, change both, here.
"""

from __future__ import annotations

import logging
from importlib import resources

from airgap.plan.images import ImageRef, parse_image_list

DEFAULT_CHANNEL = "1.36-classic/stable"
DEFAULT_K8S_VERSION = "1.36"
DEFAULT_IMAGES_FILE = "default-images.txt"

log = logging.getLogger(__name__)


def channel_track(channel: str) -> str:
    """The track of a channel: `1.36-classic/stable` -> `1.36-classic`."""
    return channel.split("/", 1)[0]


def default_images(channel: str | None = None) -> list[ImageRef]:
    """The default list; warns when ``channel``'s track is not the one it matches."""
    if channel is not None and channel_track(channel) != channel_track(DEFAULT_CHANNEL):
        log.warning(
            "the plan's channel %s is not %s, the channel the built-in image list matches "
            "(k8s %s): pass that snap's list with --images (`k8s list-images` or its "
            "images.txt), or a bundle with --bundle",
            channel, DEFAULT_CHANNEL, DEFAULT_K8S_VERSION,
        )
    text = resources.files("airgap").joinpath("data", DEFAULT_IMAGES_FILE).read_text()
    return parse_image_list(text, DEFAULT_IMAGES_FILE)
