"""Tiny OCI images built offline, byte-for-byte reproducible.

The lab's simulated upstream and the tests need real images with no registry to pull
from. Layers are written here as tar+gzip with fixed owners, modes and times, so the
same files always give the same digests: the busybox base layer is one blob shared by
every image, which is what layer-reuse and digest-stability checks rely on. The result
is a standard OCI image layout (checked with umoci in the tests) that regctl pushes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airgap import process
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.platforms import Platform, parse_platform
from airgap.tools import find_tool, run_tool

BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "sleep", "true", "false", "env", "wget", "nc")
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def parse_build_platform(text: str) -> Platform:
    """airgap.platforms' parser, with a user error for a bad platform."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise AirgapError(
            f"Invalid platform {text!r}", resolution="Use os/arch[/variant], e.g. linux/arm64."
        )
    return parse_platform(text)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mediaType": self.media_type, "digest": self.digest, "size": self.size,
        }
        if self.platform is not None:
            out["platform"] = self.platform.as_json()
        return out


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """An OCI image layout directory: content-addressed blobs plus index.json tags."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        oci_layout = path / "oci-layout"
        if not oci_layout.exists():
            write_atomic(oci_layout, _canonical({"imageLayoutVersion": "1.0.0"}))
        if not (path / "index.json").exists():
            self._write_index([])

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        return self.path / "blobs" / algo / hexd

    def put_blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.blob_path(digest)
        if not target.exists():
            write_atomic(target, data)
        return Descriptor(media_type, digest, len(data))

    def read_json(self, digest: str) -> dict[str, object]:
        data = json.loads(self.blob_path(digest).read_bytes())
        assert isinstance(data, dict)
        return data

    def _read_index(self) -> list[dict[str, object]]:
        data = json.loads((self.path / "index.json").read_bytes())
        manifests = data.get("manifests") or []
        assert isinstance(manifests, list)
        return manifests

    def _write_index(self, manifests: list[dict[str, object]]) -> None:
        index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
        write_atomic(self.path / "index.json", _canonical(index))

    def tag(self, tag: str, desc: Descriptor, *, image_name: str | None = None) -> None:
        """Point tag at desc (replacing an older entry for that tag)."""
        annotations = {REF_NAME: tag}
        if image_name:
            annotations[CONTAINERD_NAME] = image_name
        entry = {**desc.as_json(), "annotations": annotations}
        kept = [m for m in self._read_index() if _ref_name(m) != tag]
        self._write_index([*kept, entry])

    def tags(self) -> dict[str, str]:
        """tag -> digest, as index.json records them."""
        out: dict[str, str] = {}
        for m in self._read_index():
            name = _ref_name(m)
            if name is not None:
                out[name] = str(m["digest"])
        return out


def _ref_name(entry: Mapping[str, object]) -> str | None:
    ann = entry.get("annotations")
    if isinstance(ann, dict) and REF_NAME in ann:
        return str(ann[REF_NAME])
    return None


def _tar_layer(entries: Iterable[tuple[str, bytes | None, int, str | None]]) -> bytes:
    """A reproducible tar: (path, content|None for a dir, mode, symlink target|None)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content, mode, link in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                tar.addfile(info)
            elif content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _gzip(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def files_layer(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed layer tar holding files (scripts starting with #! are executable)."""
    entries: dict[str, tuple[str, bytes | None, int, str | None]] = {}
    for raw_path, content in files.items():
        path = raw_path.lstrip("/")
        if not path or path.endswith("/"):
            raise AirgapError(f"Invalid file path in image: {raw_path!r}",
                              resolution="Use a relative path to a file, such as etc/motd.")
        for parent in _parents(path):
            entries.setdefault(parent, (parent, None, 0o755, None))
        mode = 0o755 if content.startswith(b"#!") else 0o644
        entries[path] = (path, content, mode, None)
    return _tar_layer(entries.values())


def busybox_layer(busybox: Path = BUSYBOX) -> bytes:
    """/bin/busybox (static) plus a few applet links and the usual directories."""
    if not busybox.is_file():
        raise AirgapError(
            f"{busybox} not found",
            resolution="Install busybox-static (apt-get install busybox-static).",
        )
    entries: list[tuple[str, bytes | None, int, str | None]] = [
        ("bin", None, 0o755, None),
        ("etc", None, 0o755, None),
        ("tmp", None, 0o1777, None),
        ("bin/busybox", busybox.read_bytes(), 0o755, None),
    ]
    entries += [(f"bin/{a}", None, 0o777, "busybox") for a in BUSYBOX_APPLETS]
    return _tar_layer(entries)


class Builder:
    """Builds images into one layout, keeping the (expensive) base layer in memory."""

    def __init__(self, layout: Path) -> None:
        self.layout = Layout(layout)
        self._base: tuple[Descriptor, str] | None = None

    def _add_layer(self, tar_bytes: bytes) -> tuple[Descriptor, str]:
        diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
        return self.layout.put_blob(_gzip(tar_bytes), MEDIA_LAYER), diff_id

    def base_layer(self) -> tuple[Descriptor, str]:
        if self._base is None:
            self._base = self._add_layer(busybox_layer())
        return self._base

    def manifest(
        self,
        files: Mapping[str, bytes],
        *,
        platform: str = "linux/amd64",
        base_layer: bool = True,
        cmd: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """One image manifest (not tagged); returns its descriptor with the platform set."""
        plat = parse_build_platform(platform)
        layers: list[tuple[Descriptor, str]] = []
        if base_layer:
            layers.append(self.base_layer())
        if files:
            layers.append(self._add_layer(files_layer(files)))
        if not layers:
            raise AirgapError("An image needs a base layer or at least one file",
                              resolution="Pass files, or keep base_layer=True.")
        image_config: dict[str, object] = {"Env": [PATH_ENV]}
        image_config["Cmd"] = list(cmd) if cmd else (["/bin/sh"] if base_layer else [])
        if labels:
            image_config["Labels"] = dict(labels)
        config = {
            **plat.as_json(),
            "created": CREATED,
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
            "history": [{"created": CREATED, "created_by": "lab.ocibuild"} for _ in layers],
        }
        config_desc = self.layout.put_blob(_canonical(config), MEDIA_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_desc.as_json(),
            "layers": [desc.as_json() for desc, _ in layers],
        }
        desc = self.layout.put_blob(_canonical(manifest), MEDIA_MANIFEST)
        return Descriptor(desc.media_type, desc.digest, desc.size, plat)

    def image(
        self,
        tag: str,
        files: Mapping[str, bytes],
        *,
        platform: str = "linux/amd64",
        base_layer: bool = True,
        image_name: str | None = None,
        cmd: Sequence[str] | None = None,
    ) -> Descriptor:
        """A single-platform image, tagged in the layout."""
        desc = self.manifest(files, platform=platform, base_layer=base_layer, cmd=cmd)
        self.layout.tag(tag, desc, image_name=image_name)
        return desc

    def index(
        self,
        tag: str,
        files: Mapping[str, bytes],
        *,
        platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
        base_layer: bool = True,
        image_name: str | None = None,
    ) -> Descriptor:
        """A multi-platform image index, tagged in the layout.

        Every variant carries the same (amd64) busybox; only the config's platform
        differs, which is all that platform selection in containerd and regclient reads.
        """
        children = [
            self.manifest(files, platform=p, base_layer=base_layer) for p in platforms
        ]
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [c.as_json() for c in children],
        }
        desc = self.layout.put_blob(_canonical(index), MEDIA_INDEX)
        self.layout.tag(tag, desc, image_name=image_name)
        return desc


def build_image(
    layout: Path,
    files: Mapping[str, bytes],
    *,
    tag: str = "latest",
    platform: str = "linux/amd64",
    base_layer: bool = True,
    image_name: str | None = None,
) -> Descriptor:
    """Add one image (tagged `tag`) to the OCI layout at `layout`, creating it if needed."""
    return Builder(layout).image(
        tag, files, platform=platform, base_layer=base_layer, image_name=image_name
    )


def build_index(
    layout: Path,
    files: Mapping[str, bytes],
    *,
    tag: str = "latest",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    image_name: str | None = None,
) -> Descriptor:
    """Add a multi-platform index (tagged `tag`) to the OCI layout at `layout`."""
    return Builder(layout).index(tag, files, platforms=platforms, image_name=image_name)


def write_oci_archive(layout: Path, archive: Path) -> Path:
    """The layout as one uncompressed tar (what containerd side-loads), written atomically."""
    entries: list[tuple[str, bytes | None, int, str | None]] = []
    for root, dirs, names in os.walk(layout):
        rel_root = os.path.relpath(root, layout)
        for d in dirs:
            entries.append((os.path.normpath(os.path.join(rel_root, d)), None, 0o755, None))
        for n in names:
            full = Path(root) / n
            entries.append((os.path.normpath(os.path.join(rel_root, n)),
                            full.read_bytes(), 0o644, None))
    return write_atomic(archive, _tar_layer(entries))


class Regctl:
    """regctl with a private config (HOME, REGCTL_CONFIG, DOCKER_CONFIG in `home`).

    Nothing reads or writes the user's own ~/.regctl or ~/.docker; credentials reach
    regctl through stdin, never argv.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "docker").mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "REGCTL_CONFIG": str(self.home / "regctl.json"),
            "DOCKER_CONFIG": str(self.home / "docker"),
        }

    def run(
        self, args: Sequence[str], *, check: bool = True, timeout: float | None = 300
    ) -> subprocess.CompletedProcess[str]:
        return run_tool("regctl", args, env=self.env, check=check, timeout=timeout)

    def configure(self, host: str, *, tls: str = "enabled", ca_pem: bytes | None = None) -> None:
        """Per-registry TLS: 'enabled', 'disabled' (plain http) or 'insecure'."""
        args = ["registry", "set", host, "--tls", tls, "--skip-check"]
        if ca_pem is not None:
            args += ["--cacert", ca_pem.decode()]
        self.run(args)

    def login(self, host: str, username: str, password: str) -> None:
        process.run(
            [str(find_tool("regctl")), "registry", "login", host, "-u", username,
             "--pass-stdin", "--skip-check"],
            env=self.env, input=password.encode(),
        )

    def digest(self, ref: str) -> str:
        return self.run(["image", "digest", ref]).stdout.strip()


def push_layout(layout: Path, ref: str, *, regctl: Regctl, tag: str | None = None) -> str:
    """Copy `tag` of the layout (its only tag when None) to ref; returns the digest."""
    tags = Layout(layout).tags()
    if tag is None:
        if len(tags) != 1:
            raise AirgapError(
                f"OCI layout {layout} has {len(tags)} tags; name the one to push",
                details=", ".join(sorted(tags)) or "(none)",
                resolution="Pass tag= with one of the tags above.",
            )
        tag = next(iter(tags))
    if tag not in tags:
        raise AirgapError(f"OCI layout {layout} has no tag {tag!r}",
                          resolution="Name one of the layout's tags (index.json lists them).")
    regctl.run(["image", "copy", f"ocidir://{layout}:{tag}", ref])
    return tags[tag]
