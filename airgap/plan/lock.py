"""images.lock: every image that crosses the gap, pinned to a digest.

Written by ``invoke prepare``; read by mirror (verify by digest), side-load (export
exactly these) and the e2e proof (pull exactly these). JSON, sorted, stable:

    {"version": 1,
     "platforms": ["linux/amd64"],
     "images": [{"ref": "ghcr.io/canonical/k8s-snap/pause:3.10",
                 "digest": "sha256:...",            # what the tag resolved to (index or manifest)
                 "media_type": "application/vnd.oci.image.index.v1+json",
                 "platforms": {"linux/amd64": "sha256:..."},  # per-platform manifest digests
                 "source": "k8s"}]}                 # k8s (images.txt) or workload
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.plan.images import ImageRef, parse_image_ref

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedImage:
    ref: ImageRef
    digest: str
    media_type: str = ""
    platforms: dict[str, str] = field(default_factory=dict)
    source: str = "k8s"

    def to_json(self) -> dict[str, object]:
        return {
            "ref": str(self.ref),
            "digest": self.digest,
            "media_type": self.media_type,
            "platforms": dict(sorted(self.platforms.items())),
            "source": self.source,
        }


@dataclass(frozen=True)
class ImageLock:
    platforms: list[str]
    images: list[LockedImage]

    def refs(self) -> list[ImageRef]:
        return [i.ref for i in self.images]

    def find(self, ref: ImageRef) -> LockedImage | None:
        for img in self.images:
            if img.ref.name == ref.name:
                return img
        return None


def dumps_lock(lock: ImageLock) -> str:
    data = {
        "version": LOCK_VERSION,
        "platforms": list(lock.platforms),
        "images": [i.to_json() for i in sorted(lock.images, key=lambda i: str(i.ref))],
    }
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def write_lock(path: str | Path, lock: ImageLock) -> Path:
    return write_atomic(path, dumps_lock(lock))


def read_lock(path: str | Path) -> ImageLock:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise AirgapError(
            f"{p}: images.lock not found",
            resolution="Run `invoke prepare` to write it, or pass the right --bundle.",
        ) from None
    except json.JSONDecodeError as exc:
        raise AirgapError(f"{p}: not valid JSON ({exc})",
                          resolution="Re-run `invoke prepare` to rewrite it.") from None
    version = data.get("version") if isinstance(data, dict) else None
    if version != LOCK_VERSION:
        raise AirgapError(f"{p}: unsupported images.lock version {version!r}",
                          resolution="Re-run `invoke prepare` with this version of k8s-airgap.")
    images = []
    for n, item in enumerate(data.get("images", [])):
        try:
            ref = parse_image_ref(item["ref"])
            digest = str(item["digest"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AirgapError(f"{p}: images[{n}]: invalid entry ({exc})",
                              resolution="Re-run `invoke prepare` to rewrite it.") from None
        images.append(LockedImage(
            ref=ref, digest=digest, media_type=str(item.get("media_type", "")),
            platforms=dict(item.get("platforms", {})), source=str(item.get("source", "k8s"))))
    return ImageLock(platforms=list(data.get("platforms", [])), images=images)
