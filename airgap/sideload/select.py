"""What to export: the images for the plan's platform, their archive names and sources."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from airgap.errors import AirgapError
from airgap.plan import Plan
from airgap.plan.images import ImageRef
from airgap.plan.lock import ImageLock
from airgap.platforms import parse_platform


@dataclass(frozen=True)
class SideloadImage:
    """One image to export: its name on the nodes, where to pull it, what digest to expect."""

    ref: ImageRef  # digest-free, fully qualified: the name kubelet asks for
    source: str  # the reference regctl reads (upstream, or a connected-side registry)
    expected_digest: str | None = None  # the digest the runtime will record

    @property
    def archive_name(self) -> str:
        return archive_file_name(self.ref)


def archive_file_name(ref: ImageRef) -> str:
    """A readable, unique file name: ghcr.io_canonical_k8s-snap_pause_3.10.tar."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", ref.name) + ".tar"


@dataclass(frozen=True)
class Source:
    """A connected-side registry to export from instead of each image's upstream.

    ``http://HOST:PORT[/prefix]``; the prefix may contain {registry} like mirror.path_prefix.
    """

    scheme: str
    host: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Source:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AirgapError(
                f"--source {url!r}: not a registry URL",
                resolution="Write http://HOST:PORT or https://HOST:PORT[/nested/path].",
            )
        return cls(parts.scheme, parts.netloc, parts.path.strip("/"))

    def ref_for(self, ref: ImageRef) -> ImageRef:
        return ref.in_registry(self.host, self.prefix.replace("{registry}", ref.registry))

    def regctl_args(self) -> list[str]:
        return ["--host", f"reg={self.host},tls=disabled"] if self.scheme == "http" else []


def plan_platform(plan: Plan, platform: str | None) -> str:
    """The nodes' platform: --platform, else the plan's only platform."""
    if platform:
        try:
            parse_platform(platform)
        except ValueError as exc:
            raise AirgapError(f"--platform: {exc}",
                              resolution="Give the nodes' platform as os/arch[/variant], e.g. "
                              "--platform linux/arm64.") from None
        return platform
    if len(plan.platforms) != 1:
        raise AirgapError(
            f"{plan.source}: platforms lists {', '.join(plan.platforms)}; an archive holds one",
            resolution="Pass --platform for the nodes you deliver to, and write each platform's "
            "archives to their own --out directory.",
        )
    return plan.platforms[0]


def select_images(
    refs: Sequence[ImageRef],
    platform: str,
    *,
    lock: ImageLock | None = None,
    source: Source | None = None,
) -> list[SideloadImage]:
    """Pair each image with the reference to export from and the digest to expect.

    With a lock, the export is pinned to the locked digest, and the expected digest is
    the platform's manifest digest (or the image digest when it is a single manifest).
    """
    out = []
    for ref in refs:
        name = ImageRef(ref.registry, ref.repository, ref.tag or "latest", None)
        src = source.ref_for(name) if source else name
        expected = None
        locked = lock.find(name) if lock else None
        if locked is not None:
            src = src.with_digest(locked.digest)
            expected = locked.platforms.get(platform)
            if expected is None and locked.media_type and "index" not in locked.media_type \
                    and "list" not in locked.media_type:
                expected = locked.digest
            if expected is None and locked.platforms:
                raise AirgapError(
                    f"{name.name}: images.lock has no {platform} manifest "
                    f"(it has {', '.join(sorted(locked.platforms))})",
                    resolution="Re-run `invoke prepare` with this platform in the plan.",
                )
        elif ref.digest:
            src = src.with_digest(ref.digest)
        out.append(SideloadImage(name, str(src), expected))
    return out


def expected_refs(images: Sequence[SideloadImage]) -> list[ImageRef]:
    """What validate_archives expects: each name, with the digest the runtime records
    when it is known."""
    return [i.ref.with_digest(i.expected_digest) if i.expected_digest else i.ref
            for i in images]


def expected_from_lock(lock: ImageLock, platform: str) -> list[ImageRef]:
    """What validate_archive should expect for a bundle: names with the digests the
    runtime records for ``platform``."""
    return expected_refs(select_images(lock.refs(), platform, lock=lock))
