"""The images a plan implies, from wherever they are given: one place.

The k8s list comes from an explicit list (``--images``: ``k8s list-images`` output or
the snap's images.txt), else the bundle's images.lock, else the built-in list for the
default channel (airgap.plan.defaults); the plan's workload images are added. Mirror and
sideload also take the lock that pins them.
"""

from __future__ import annotations

from pathlib import Path

from airgap.bundle import Bundle
from airgap.errors import AirgapError
from airgap.plan.defaults import default_images
from airgap.plan.images import ImageRef, merge_images, read_image_list
from airgap.plan.lock import ImageLock, read_lock
from airgap.plan.model import Plan, workload_images


def plan_images(
    plan: Plan, *, images_file: Path | None = None, bundle: Path | None = None
) -> list[ImageRef]:
    """The images a plan implies: the k8s list plus the plan's workload images.

    The k8s list is, in order of preference: an explicit ``k8s list-images`` output or
    images.txt, the bundle's images.lock (what ``invoke prepare`` pinned), or the list
    shipped with k8s-airgap (the images the upstream procedure names).
    """
    if images_file is not None and bundle is not None:
        raise AirgapError(
            "Give --images or --bundle, not both",
            resolution="--images FILE for a list-images output, "
            "--bundle DIR for a prepared bundle.",
        )
    if images_file is not None:
        base = read_image_list(images_file)
    elif bundle is not None and Bundle(bundle).lock.is_file():
        base = read_lock(Bundle(bundle).lock).refs()
    elif bundle is not None and not bundle.is_dir():
        raise AirgapError(
            f"{bundle}: bundle directory not found",
            resolution="Pass the directory `invoke prepare --bundle DIR` wrote.",
        )
    else:
        base = default_images(plan.k8s.channel)
    return merge_images(base, workload_images(plan))


def plan_images_locked(
    plan: Plan,
    *,
    images_file: Path | None = None,
    bundle: Path | None = None,
    lock: Path | None = None,
) -> tuple[list[ImageRef], ImageLock | None]:
    """The images to copy and the lock that pins them, for mirror and sideload.

    The lock is ``lock`` (which must exist) or the bundle's images.lock when there is
    one. Unless ``images_file`` replaces the k8s list, every locked image is included
    even if the plan no longer names it, so what prepare pinned is what crosses.
    """
    lock_path = lock if lock is not None else (Bundle(bundle).lock if bundle else None)
    if lock is not None and not lock.is_file():
        raise AirgapError(f"{lock}: images.lock not found",
                          resolution="Pass the images.lock `invoke prepare` wrote (--lock), "
                          "or the bundle directory (--bundle).")
    locked = read_lock(lock_path) if lock_path is not None and lock_path.is_file() else None
    refs = plan_images(plan, images_file=images_file,
                       bundle=bundle if lock is None else None)
    if locked is not None and images_file is None:
        refs = merge_images(locked.refs(), refs)
    return refs, locked
