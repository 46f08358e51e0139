"""Image references: parse, normalise, and read image lists.

The runtime looks images up by their fully qualified name (``docker.io/library/x:tag``,
FACTS), so every reference is normalised the way containerd and Docker do it: an
implied registry is docker.io, an implied namespace on docker.io is library/, an
implied tag is latest (unless a digest is given). Lists come from ``k8s list-images``,
the snap's ``images.txt`` and the user's workload files; all go through one parser
that names the file and line of anything it rejects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from airgap.errors import ImageListError

DOCKER_HUB = "docker.io"
_DOCKER_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
DOCKER_HUB_SERVER = "https://registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
# The distribution spec's limit on a repository name (registry host and path); a line
# longer than any reference can be is refused before it is parsed.
MAX_NAME = 255
MAX_LINE = 4096
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
_HOST_RE = re.compile(
    r"^(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)


@dataclass(frozen=True, order=True)
class ImageRef:
    """A fully qualified image reference."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def name(self) -> str:
        """registry/repository:tag without the digest: what kubelet asks the runtime for."""
        out = f"{self.registry}/{self.repository}"
        return out + f":{self.tag}" if self.tag else out

    @property
    def path(self) -> str:
        """repository[:tag][@digest], the reference below its registry."""
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.tag, digest)

    def in_registry(self, registry: str, prefix: str = "") -> ImageRef:
        """The same image under another registry, optionally below a nested path prefix."""
        repo = f"{prefix.strip('/')}/{self.repository}" if prefix.strip("/") else self.repository
        return ImageRef(registry, repo, self.tag, self.digest)


def is_repository_path(path: str) -> bool:
    """A valid repository path: lowercase components separated by '/'."""
    return bool(_REPO_RE.match(path))


def parse_image_ref(text: str) -> ImageRef:
    """Parse and normalise one reference; ValueError says what is wrong."""
    ref = text.strip()
    if not ref:
        raise ValueError("empty image reference")
    if any(c.isspace() for c in ref):
        raise ValueError(f"{ref!r} contains white space")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ValueError(f"{text!r}: {digest!r} is not a digest such as sha256:<64 hex>")
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise ValueError(f"{text!r}: {tag!r} is not a valid tag")
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, repo = first, rest
        if not _HOST_RE.match(registry):
            raise ValueError(f"{text!r}: {registry!r} is not a registry host[:port]")
        has_port = ":" in registry and not registry.endswith("]")
        port = registry.rsplit(":", 1)[1] if has_port else None
        if port is not None and not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: port {port} is out of range")
        if registry in _DOCKER_ALIASES:
            registry = DOCKER_HUB
    else:
        registry, repo = DOCKER_HUB, ref
    if registry != registry.lower():
        registry = registry.lower()
    if not repo:
        raise ValueError(f"{text!r}: no repository name")
    if not _REPO_RE.match(repo):
        raise ValueError(
            f"{text!r}: {repo!r} is not a valid repository "
            "(lowercase letters, digits, '.', '_', '-', '/')"
        )
    if registry == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    if len(registry) + 1 + len(repo) > MAX_NAME:
        raise ValueError(
            f"{registry}/{repo[:40]}...: the name is {len(registry) + 1 + len(repo)} "
            f"characters; registries refuse names over {MAX_NAME}"
        )
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry, repo, tag, digest)


def parse_image_list(text: str, source: str = "<images>") -> list[ImageRef]:
    """Parse an image list: one reference per line; '#' comments, blank lines, CRLF and
    trailing spaces are fine; duplicates are merged. Returns a sorted, unique list."""
    seen: dict[str, ImageRef] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if len(raw) > MAX_LINE:
            raise ImageListError(
                f"{source}:{number}: line of {len(raw)} characters (an image reference is "
                f"at most {MAX_NAME + 150}); this is not an image list",
                resolution="Pass the output of `k8s list-images` or the snap's images.txt: "
                "one reference per line.",
            )
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            ref = parse_image_ref(line)
        except ValueError as exc:
            raise ImageListError(
                f"{source}:{number}: invalid image reference: {exc}",
                resolution="Write one fully qualified reference per line, "
                "e.g. ghcr.io/canonical/coredns:1.11.1-ck4",
            ) from None
        seen.setdefault(str(ref), ref)
    if not seen:
        raise ImageListError(
            f"{source}: no image references (the list is empty, or only comments and blank "
            "lines)",
            resolution="An empty list usually means the command that wrote it failed: write "
            "it again on a machine with the k8s snap (`k8s list-images > images.txt`) and "
            "check its exit code, or leave --images out to use the bundle's images.lock or "
            "the built-in list.",
        )
    return sorted(seen.values(), key=str)


def read_image_list(path: str | Path) -> list[ImageRef]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageListError(
            f"{p}: image list not found",
            resolution="Check the path. Write the k8s list on a machine with the k8s snap "
            "(`k8s list-images > images.txt`), or leave --images out to use the bundle's "
            "images.lock or the built-in list.",
        ) from None
    except IsADirectoryError:
        raise ImageListError(f"{p}: is a directory, not an image list",
                             resolution="Pass the image list file itself.") from None
    try:
        text = data.decode("utf-8-sig")  # an editor's byte-order mark is not part of line 1
    except UnicodeDecodeError:
        raise ImageListError(
            f"{p}: not a text file (UTF-8 expected)",
            resolution="Pass a text file with one image reference per line.",
        ) from None
    return parse_image_list(text, str(p))


def merge_images(*lists: Iterable[ImageRef]) -> list[ImageRef]:
    """One sorted, duplicate-free list."""
    seen: dict[str, ImageRef] = {}
    for lst in lists:
        for ref in lst:
            seen.setdefault(str(ref), ref)
    return sorted(seen.values(), key=str)


def registries(images: Iterable[ImageRef]) -> list[str]:
    """The upstream registry hosts an image list names, sorted."""
    return sorted({ref.registry for ref in images})


def upstream_server(registry: str) -> str:
    """The URL containerd uses for a registry when no hosts.toml says otherwise."""
    return DOCKER_HUB_SERVER if registry == DOCKER_HUB else f"https://{registry}"


def format_image_list(images: Iterable[ImageRef]) -> str:
    return "".join(f"{ref}\n" for ref in images)
