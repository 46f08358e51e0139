"""Tag -> digest: the image digests prepare pins in images.lock.

Asked through the one registry client (airgap.registry), one keep-alive connection
per registry, configured as regclient is (regctl's per-registry settings). Measured
by ``python -m bench.resolve``: 25 images in 0.13 s against 2.1 s for the three regctl
processes per image this module used to start (ratio 0.063).
"""

from __future__ import annotations

from collections.abc import Sequence

from airgap.errors import AirgapError
from airgap.plan.images import ImageRef, merge_images
from airgap.plan.lock import ImageLock, LockedImage
from airgap.progress import Say, quiet
from airgap.registry import RegistryClient, pinning_client, regctl_hosts


def resolve_image(ref: ImageRef, platforms: Sequence[str], source: str,
                  client: RegistryClient | None = None) -> LockedImage:
    """Tag -> digest, and per target platform the manifest digest the runtime will pull."""
    own = client is None
    reg = client or pinning_client(ref.registry)
    try:
        found = reg.resolve(ref, platforms)
    except AirgapError as exc:
        if "variant" in exc.brief:
            raise AirgapError(
                f"image {ref} ({source}) has no {exc.brief.rsplit(' has no ', 1)[1]}",
                resolution=exc.resolution) from None
        raise AirgapError(
            f"cannot resolve image {ref} ({source})",
            details=str(exc),
            resolution=exc.resolution or "Check that the registry is reachable from this "
            "machine and the image exists.",
        ) from None
    finally:
        if own:
            reg.close()
    return LockedImage(ref=ref, digest=found.digest, media_type=found.media_type,
                       platforms=found.platforms, source=source)


def resolve_images(
    k8s: Sequence[ImageRef],
    workload: Sequence[ImageRef],
    platforms: Sequence[str],
    progress: Say = quiet,
) -> ImageLock:
    k8s_names = {r.name for r in k8s}
    images = merge_images(k8s, workload)
    hosts = regctl_hosts()
    clients: dict[str, RegistryClient] = {}
    locked = []
    try:
        for n, ref in enumerate(images, 1):
            progress(f"resolving image {n}/{len(images)}: {ref}")
            client = clients.get(ref.registry)
            if client is None:
                client = clients[ref.registry] = pinning_client(ref.registry, hosts)
            locked.append(resolve_image(ref, platforms,
                                        "k8s" if ref.name in k8s_names else "workload", client))
    finally:
        for client in clients.values():
            client.close()
    return ImageLock(platforms=list(platforms), images=locked)


__all__ = ["resolve_image", "resolve_images"]
