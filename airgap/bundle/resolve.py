"""Tag -> digest: the image digests prepare pins in images.lock, looked up with regctl."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from airgap import tools
from airgap.errors import AirgapError
from airgap.plan.images import ImageRef, merge_images
from airgap.plan.lock import ImageLock, LockedImage
from airgap.platforms import parse_platform, platform_matches

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
RESOLVE_TIMEOUT = 120.0

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _regctl(args: Sequence[str]) -> str:
    return tools.run_tool("regctl", list(args), timeout=RESOLVE_TIMEOUT).stdout


def resolve_image(ref: ImageRef, platforms: Sequence[str], source: str) -> LockedImage:
    """Tag -> digest, and per target platform the manifest digest the runtime will pull."""
    text = str(ref)
    try:
        head = _regctl(
            [
                "manifest",
                "get",
                text,
                "--format",
                "{{ .GetDescriptor.Digest }} {{ .GetDescriptor.MediaType }}",
            ]
        ).split()
        digest, media_type = head[0], head[1] if len(head) > 1 else ""
        pinned = str(ref.with_digest(digest))
        body = json.loads(_regctl(["manifest", "get", pinned, "--format", "raw-body"]))
        per_platform: dict[str, str] = {}
        if media_type in INDEX_TYPES:
            entries = body.get("manifests", [])
            for want in platforms:
                w = parse_platform(want)
                for m in entries:
                    p = m.get("platform") or {}
                    found = parse_platform(
                        f"{p.get('os', '?')}/{p.get('architecture', '?')}"
                        + (f"/{p['variant']}" if p.get("variant") else "")
                    )
                    if platform_matches(found, w):
                        per_platform[want] = m["digest"]
                        break
        else:
            config = json.loads(
                _regctl(
                    [
                        "blob",
                        "get",
                        f"{ref.registry}/{ref.repository}",
                        body["config"]["digest"],
                        "--format",
                        "raw-body",
                    ]
                )
            )
            found_text = f"{config.get('os', '?')}/{config.get('architecture', '?')}" + (
                f"/{config['variant']}" if config.get("variant") else ""
            )
            for want in platforms:
                if platform_matches(parse_platform(found_text), parse_platform(want)):
                    per_platform[want] = digest
    except AirgapError as exc:
        raise AirgapError(
            f"cannot resolve image {text} ({source})",
            details=str(exc),
            resolution="Check that the registry is reachable from this machine "
            "and the image exists (regctl config: REGCTL_CONFIG).",
        ) from None
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise AirgapError(
            f"cannot resolve image {text}: unexpected manifest ({exc!r})",
            resolution=f"Inspect it with `regctl manifest get {text}`; the plan needs an image "
            "or index in the OCI or Docker format there, so name a tag that has one.",
        ) from None
    missing = [p for p in platforms if p not in per_platform]
    if missing:
        raise AirgapError(
            f"image {text} ({source}) has no {', '.join(missing)} variant",
            resolution="Remove that platform from the plan or use an image built for it.",
        )
    return LockedImage(
        ref=ref, digest=digest, media_type=media_type, platforms=per_platform, source=source
    )


def resolve_images(
    k8s: Sequence[ImageRef],
    workload: Sequence[ImageRef],
    platforms: Sequence[str],
    progress: Progress = _quiet,
) -> ImageLock:
    k8s_names = {r.name for r in k8s}
    images = merge_images(k8s, workload)
    locked = []
    for n, ref in enumerate(images, 1):
        progress(f"resolving image {n}/{len(images)}: {ref}")
        locked.append(resolve_image(ref, platforms, "k8s" if ref.name in k8s_names else "workload"))
    return ImageLock(platforms=list(platforms), images=locked)

