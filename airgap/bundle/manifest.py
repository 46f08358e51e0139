"""The manifest: every file's sha256 and size, each snap's revision, channel and
snap-sha3-384, each image's digests and the tool versions used.

The document is a pydantic model (``ManifestDocument``), read and written through it;
the rest of the library works with the plain ``Manifest`` it converts to. A manifest
that does not validate is refused with the field and the shape it should have had, in
the same words for every field, never with pydantic's own text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic_core import ErrorDetails

from airgap.bundle.layout import Bundle
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.plan.images import parse_image_ref
from airgap.plan.lock import LockedImage
from airgap.snaps import FileDigests

MANIFEST_VERSION = 1

_SNAP_KEYS = ("name", "revision", "channel", "sha3_384", "snap_id", "file", "assert")
_FILE_SHAPE = '{"size": <bytes>, "sha256": "<hex>"}'
_SNAP_SHAPE = "{" + ", ".join(f'"{k}": "..."' for k in _SNAP_KEYS) + "}"
_IMAGE_SHAPE = ('{"ref": "<registry>/<repository>:<tag>", "digest": "sha256:<hex>", '
                '"platforms": {"<os>/<arch>": "sha256:<hex>"}}')
_SHAPES = {
    "files": f"an object mapping each path to {_FILE_SHAPE}",
    "snaps": f"a list of {_SNAP_SHAPE}",
    "images": f"a list of {_IMAGE_SHAPE}",
    "created": 'a string (UTC time, "YYYY-MM-DDTHH:MM:SSZ")',
    "platforms": 'a list of strings ("<os>/<arch>")',
    "signature_check": "true or false",
    "trusted_roots": "a list of strings",
    "tools": "an object mapping each tool to its version string",
    "base": '{"manifest_sha256": "<hex>", "created": "<UTC time>"} (a delta bundle), or absent',
}


@dataclass(frozen=True)
class SnapEntry:
    name: str
    revision: str
    channel: str
    sha3_384: str
    snap_id: str
    file: str
    assertion: str
    chain: str


@dataclass(frozen=True)
class BaseRef:
    """What a delta bundle was made against: the sha256 of the base bundle's manifest.json
    bytes (the manifest the site last received) and that manifest's ``created``."""

    manifest_sha256: str
    created: str = ""


@dataclass(frozen=True)
class Manifest:
    files: dict[str, FileDigests]
    snaps: list[SnapEntry]
    images: list[LockedImage]
    platforms: list[str]
    tools: dict[str, str]
    created: str = ""
    signature_check: bool = True
    trusted_roots: list[str] = field(default_factory=list)
    # Set on a delta: the files listed are the whole new bundle's, the delta directory
    # holds only those its base lacks. Absent (None) for a full bundle.
    base: BaseRef | None = None

    def to_json(self) -> dict[str, Any]:
        doc = ManifestDocument.of(self).model_dump(by_alias=True)
        if doc.get("base") is None:
            doc.pop("base", None)  # a full bundle's manifest reads as it always did
        return doc


# --- the document -----------------------------------------------------------------------


def _supported(version: object) -> int:
    if version != MANIFEST_VERSION:
        raise ValueError("unsupported manifest version")
    return MANIFEST_VERSION


def _revision_text(value: object) -> object:
    """A revision written as a number is taken as its text."""
    return str(value) if isinstance(value, int) else value


def _image_ref(text: str) -> str:
    parse_image_ref(text)  # ValueError names what is wrong with it
    return text


class _FileDocument(BaseModel):
    sha256: StrictStr
    size: StrictInt


class _SnapDocument(BaseModel):
    # In _SNAP_KEYS order: the first wrong key is the one the error names.
    name: StrictStr
    revision: Annotated[StrictStr, BeforeValidator(_revision_text)]
    channel: StrictStr
    sha3_384: StrictStr
    snap_id: StrictStr
    file: StrictStr
    assertion: StrictStr = Field(alias="assert")
    chain: StrictStr = ""


class _ImageDocument(BaseModel):
    ref: Annotated[StrictStr, AfterValidator(_image_ref)]
    digest: StrictStr
    platforms: dict[str, StrictStr] = Field(default_factory=dict)


class _BaseDocument(BaseModel):
    manifest_sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    created: StrictStr = ""


class ManifestDocument(BaseModel):
    """manifest.json as written; field order is the file's key order."""

    version: Annotated[Any, AfterValidator(_supported)]
    created: StrictStr = ""
    files: dict[str, _FileDocument]
    snaps: list[_SnapDocument]
    images: list[_ImageDocument] = Field(default_factory=list)
    platforms: list[StrictStr] = Field(default_factory=list)
    signature_check: StrictBool = True
    trusted_roots: list[StrictStr] = Field(default_factory=list)
    tools: dict[str, StrictStr] = Field(default_factory=dict)
    base: _BaseDocument | None = None

    @classmethod
    def of(cls, m: Manifest) -> ManifestDocument:
        return cls(
            version=MANIFEST_VERSION,
            created=m.created,
            files={p: _FileDocument(sha256=d.sha256, size=d.size)
                   for p, d in sorted(m.files.items())},
            snaps=[_SnapDocument.model_validate({
                "name": s.name, "revision": s.revision, "channel": s.channel,
                "sha3_384": s.sha3_384, "snap_id": s.snap_id, "file": s.file,
                "assert": s.assertion, "chain": s.chain,
            }) for s in m.snaps],
            images=[_ImageDocument(ref=str(i.ref), digest=i.digest,
                                   platforms=dict(sorted(i.platforms.items())))
                    for i in sorted(m.images, key=lambda i: str(i.ref))],
            platforms=list(m.platforms),
            signature_check=m.signature_check,
            trusted_roots=list(m.trusted_roots),
            tools=dict(sorted(m.tools.items())),
            base=None if m.base is None else _BaseDocument(
                manifest_sha256=m.base.manifest_sha256, created=m.base.created),
        )

    def manifest(self) -> Manifest:
        return Manifest(
            files={rel: FileDigests(f.size, f.sha256) for rel, f in self.files.items()},
            snaps=[SnapEntry(s.name, s.revision, s.channel, s.sha3_384, s.snap_id, s.file,
                             s.assertion, s.chain) for s in self.snaps],
            images=[LockedImage(ref=parse_image_ref(i.ref), digest=i.digest,
                                platforms=dict(i.platforms)) for i in self.images],
            platforms=list(self.platforms),
            tools=dict(self.tools),
            created=self.created,
            signature_check=self.signature_check,
            trusted_roots=list(self.trusted_roots),
            base=None if self.base is None else BaseRef(self.base.manifest_sha256,
                                                        self.base.created),
        )


# --- reading and writing ----------------------------------------------------------------


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    return write_atomic(Bundle(bundle).manifest,
                        json.dumps(manifest.to_json(), indent=2) + "\n")


def read_manifest(bundle: Path) -> Manifest:
    """The manifest of a bundle; AirgapError when missing (prepare did not finish) or bad."""
    return read_manifest_file(Bundle(bundle).manifest)


def read_manifest_file(path: Path) -> Manifest:
    """A manifest.json wherever it is (a delta's ``--since`` is a manifest kept apart
    from its bundle); the same refusals as read_manifest, naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AirgapError(
            f"{path}: no manifest: the bundle is incomplete (prepare did not finish)",
            resolution="Run `invoke prepare --bundle DIR` again on the connected side "
            "and copy the whole directory.",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AirgapError(
            f"{path}: not valid JSON ({exc})",
            resolution="Copy the bundle again, or re-run `invoke prepare`.",
        ) from None
    try:
        doc = ManifestDocument.model_validate(data)
    except ValidationError as exc:
        raise _refusal(path, exc.errors()) from None
    for rel in [*doc.files, *(s.file for s in doc.snaps), *(s.assertion for s in doc.snaps)]:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise AirgapError(
                f"{path}: entry {rel!r} points outside the bundle",
                resolution="Do not use this bundle: its manifest was edited. Copy it again "
                "from the connected side, or re-run `invoke prepare --bundle DIR` there.",
            )
    return doc.manifest()


def _malformed(path: Path, where: str, shape: str) -> AirgapError:
    return AirgapError(
        f"{path}: {where}: expected {shape}",
        resolution="The manifest was edited or damaged: copy the bundle again, or re-run "
        "`invoke prepare --bundle DIR` on the connected side.",
    )


def _refusal(path: Path, errors: list[ErrorDetails]) -> AirgapError:
    """The first problem (pydantic reports them in field order), in the manifest's words."""
    first = errors[0]
    loc = first["loc"]
    top = str(loc[0]) if loc else ""
    if top in ("", "version"):
        return AirgapError(
            f"{path}: unsupported manifest version",
            resolution="Prepare and verify with the same k8s-airgap version.",
        )
    if len(loc) == 1 or top not in ("files", "snaps", "images"):
        return _malformed(path, top, _SHAPES[top])
    item = loc[1]
    if top == "files":
        return _malformed(path, f"files[{str(item)!r}]", _FILE_SHAPE)
    if top == "snaps":
        if len(loc) == 2:
            return _malformed(path, f"snaps[{item}]", _SNAP_SHAPE)
        key = loc[2]
        if first["type"] == "missing":
            return _malformed(path, f"snaps[{item}]: no {key!r}", _SNAP_SHAPE)
        return _malformed(path, f"snaps[{item}].{key}", f"a string (an entry is {_SNAP_SHAPE})")
    # An image whose shape is wrong is named as such even when its ref is bad as well.
    mine = [e for e in errors if e["loc"][:2] == ("images", item)]
    if all(e["loc"][2:] == ("ref",) and e["type"] == "value_error" for e in mine):
        reason = first.get("ctx", {}).get("error", "")
        return _malformed(path, f"images[{item}].ref", f"an image reference ({reason})")
    return _malformed(path, f"images[{item}]", _IMAGE_SHAPE)
