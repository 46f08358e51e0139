"""Image platforms (os/architecture/variant): parsed and matched once, for every module.

The plan names the nodes' platform; images.lock holds a digest per platform; archives
must hold the nodes' platform. Matching follows containerd's rule in short.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        out = f"{self.os}/{self.architecture}"
        return f"{out}/{self.variant}" if self.variant else out

    def as_json(self) -> dict[str, str]:
        """The OCI descriptor's platform object."""
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


def parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"{text!r} is not a platform such as linux/amd64")
    return Platform(parts[0], parts[1], parts[2] if len(parts) > 2 else "")


def platform_matches(found: Platform, wanted: Platform) -> bool:
    """containerd's rule in short: os and architecture equal; the variant must match
    when the wanted platform names one (arm64 implies v8)."""
    if (found.os, found.architecture) != (wanted.os, wanted.architecture):
        return False
    if not wanted.variant:
        return True
    default = {"arm64": "v8"}.get(found.architecture, "")
    return (found.variant or default) == wanted.variant
