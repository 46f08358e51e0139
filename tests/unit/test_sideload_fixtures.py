"""Hand-made image archives for the side-load tests (no registry, no regctl); no tests here.

An OCI layout is written blob by blob, then tarred with Python's tarfile, so each test
can break exactly one thing: a name, a platform, a blob, the compression.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NAME = "io.containerd.image.name"
REF = "org.opencontainers.image.ref.name"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


@dataclass
class Img:
    name: str | None  # io.containerd.image.name (None: leave it out)
    platform: str = "linux/amd64"
    layers: Sequence[bytes] = ()
    ref_name: str | None = None  # org.opencontainers.image.ref.name
    digest: str = ""  # filled in by build


@dataclass
class Archive:
    blobs: dict[str, bytes] = field(default_factory=dict)
    index: list[dict[str, object]] = field(default_factory=list)
    images: list[Img] = field(default_factory=list)

    def add(self, img: Img) -> Img:
        os_, arch, *variant = img.platform.split("/")
        config = {"os": os_, "architecture": arch,
                  "rootfs": {"type": "layers", "diff_ids": []}}
        if variant:
            config["variant"] = variant[0]
        cfg = json.dumps(config).encode()
        layers = list(img.layers) or [layer({"etc/hostname": (img.name or "x").encode()})]
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha(b), "size": len(b)}
                       for b in layers],
        }
        mdata = json.dumps(manifest).encode()
        for blob in (cfg, *layers, mdata):
            self.blobs[sha(blob)] = blob
        ann = {}
        if img.name is not None:
            ann[NAME] = img.name
        if img.ref_name is not None:
            ann[REF] = img.ref_name
        self.index.append({"mediaType": OCI_MANIFEST, "digest": sha(mdata),
                           "size": len(mdata), "annotations": ann})
        img.digest = sha(mdata)
        self.images.append(img)
        return img

    def write(self, path: Path, *, skip: Sequence[str] = (), replace: Mapping[str, bytes] = {},
              compress: bool = False) -> Path:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            def put(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

            put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            put("index.json", json.dumps({"schemaVersion": 2, "manifests": self.index}).encode())
            for digest, data in self.blobs.items():
                if digest in skip:
                    continue
                put(f"blobs/sha256/{digest.split(':')[1]}", replace.get(digest, data))
        raw = buf.getvalue()
        path.write_bytes(gzip.compress(raw) if compress else raw)
        return path


def oci_archive(path: Path, *images: Img, **write: object) -> Path:
    arch = Archive()
    for img in images:
        arch.add(img)
    return arch.write(path, **write)  # type: ignore[arg-type]


def docker_archive(path: Path, repo_tag: str, platform: str = "linux/amd64") -> Path:
    os_, arch = platform.split("/")[:2]
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    ldata = layer_tar.getvalue()
    cfg = json.dumps({"os": os_, "architecture": arch,
                      "rootfs": {"type": "layers", "diff_ids": [sha(ldata)]}}).encode()
    cfg_name = sha(cfg).split(":")[1] + ".json"
    manifest = [{"Config": cfg_name, "RepoTags": [repo_tag], "Layers": ["l1/layer.tar"]}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("manifest.json", json.dumps(manifest).encode()),
                           (cfg_name, cfg), ("l1/layer.tar", ldata)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path
