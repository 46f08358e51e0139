"""Delta bundles on temporary directories: make_delta keeps exactly what the base lacks,
check_delta refuses the wrong base (both digests) and names each missing or damaged
file, merge_delta rebuilds the full bundle byte for byte (linked or copied), a base that
is itself a delta is refused, verify refuses a delta alone, and unpack with a base
gives the full bundle."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from airgap.bundle import delta as delta_module
from airgap.bundle.delta import DeltaError, check_delta, make_delta, merge_delta
from airgap.bundle.layout import Bundle
from airgap.bundle.manifest import Manifest, read_manifest, write_manifest
from airgap.bundle.pack import pack
from airgap.bundle.unpack import unpack
from airgap.bundle.verify import verify_bundle
from airgap.errors import AirgapError
from airgap.snaps import FileDigests
from tests.unit.test_bundle_pack import random_bytes, tree


def blob(data: bytes) -> tuple[str, bytes]:
    return f"oci/blobs/sha256/{hashlib.sha256(data).hexdigest()}", data


LAYER_A, LAYER_B, LAYER_NEW = (blob(random_bytes(40_000, n)) for n in (1, 2, 3))
BASE_FILES = {
    "snaps/k8s.snap": random_bytes(80_000, 4),
    "snaps/k8s.assert": b"type: snap-revision\n" * 50,
    "oci/oci-layout": b'{"imageLayoutVersion": "1.0.0"}\n',
    "oci/index.json": b'{"manifests": ["a", "b"]}\n',
    "images.lock": b"a\nb\n",
    LAYER_A[0]: LAYER_A[1],
    LAYER_B[0]: LAYER_B[1],
}
# The new bundle: one image more (its layer new), one layer gone, the metadata changed.
NEW_FILES = {k: v for k, v in BASE_FILES.items() if k != LAYER_B[0]} | {
    "oci/index.json": b'{"manifests": ["a", "new"]}\n',
    "images.lock": b"a\nnew\n",
    LAYER_NEW[0]: LAYER_NEW[1],
}
CHANGED = {"oci/index.json", "images.lock", LAYER_NEW[0]}


def write_bundle(root: Path, files: dict[str, bytes], created: str) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    digests = {r: FileDigests(len(d), hashlib.sha256(d).hexdigest()) for r, d in files.items()}
    write_manifest(root, Manifest(files=digests, snaps=[], images=[], platforms=[], tools={},
                                  created=created))
    (root / "manifest.json.sig").write_text("-----BEGIN SSH SIGNATURE-----\nxx\n")
    return root


def shipped(root: Path) -> dict[str, bytes]:
    """The tree without manifest.json and its signature (a delta's are its own)."""
    return {r: d for r, d in tree(root).items() if not r.startswith("manifest.json")}


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "base", BASE_FILES, "2025-01-01T00:00:00Z")


@pytest.fixture
def full(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "full", NEW_FILES, "2025-02-01T00:00:00Z")


@pytest.fixture
def delta(full: Path, base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "delta"
    shutil.copytree(full, root)
    make_delta(root, Bundle(base).manifest)
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the manifest ----------------------------------------------------------------------

def test_a_full_manifest_has_no_base_and_reads_as_before(full: Path) -> None:
    doc = json.loads(Bundle(full).manifest.read_text())
    assert "base" not in doc
    del doc["created"]  # an old manifest: no base, nothing new
    Bundle(full).manifest.write_text(json.dumps(doc))
    assert read_manifest(full).base is None


def test_a_malformed_base_is_refused_naming_the_field(full: Path) -> None:
    doc = json.loads(Bundle(full).manifest.read_text())
    doc["base"] = {"manifest_sha256": "not hex"}
    Bundle(full).manifest.write_text(json.dumps(doc))
    with pytest.raises(AirgapError, match=r"manifest.json: base: expected .*manifest_sha256"):
        read_manifest(full)


# --- make_delta ------------------------------------------------------------------------

def test_make_delta_keeps_exactly_the_changed_files(full: Path, base: Path,
                                                    tmp_path: Path) -> None:
    root = tmp_path / "delta"
    shutil.copytree(full, root)
    report = make_delta(root, Bundle(base).manifest)
    assert set(shipped(root)) == CHANGED
    assert sorted(report.kept) == sorted(CHANGED)
    assert sorted(report.dropped) == sorted(set(NEW_FILES) - CHANGED)
    assert report.kept_bytes == sum(len(NEW_FILES[r]) for r in CHANGED)
    assert report.dropped_bytes == sum(len(d) for r, d in NEW_FILES.items() if r not in CHANGED)
    assert not (root / "snaps").exists()  # emptied directories go too
    assert report.signature_removed and not Bundle(root).signature.exists()  # it was stale
    manifest = read_manifest(root)
    assert manifest.base is not None
    assert manifest.base.manifest_sha256 == sha256(Bundle(base).manifest) == \
        report.base_manifest_sha256
    assert manifest.base.created == "2025-01-01T00:00:00Z"
    assert manifest.files == read_manifest(full).files  # the whole new bundle's


def test_an_unchanged_bundle_gives_an_empty_delta_and_says_so(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "same"
    shutil.copytree(base, root)
    report = make_delta(root, Bundle(base).manifest)
    assert report.empty and report.kept == [] and report.kept_bytes == 0
    assert "nothing changed since the base" in report.summary()
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json"]


def test_a_since_that_does_not_parse_is_refused_naming_it(full: Path, tmp_path: Path) -> None:
    since = tmp_path / "site-a.json"
    since.write_text("{not json")
    with pytest.raises(AirgapError, match=rf"--since {since}: not a bundle manifest"):
        make_delta(full, since)
    with pytest.raises(AirgapError, match="no such file"):
        make_delta(full, tmp_path / "absent.json")
    assert read_manifest(full).base is None and set(shipped(full)) == set(NEW_FILES)


def test_make_delta_of_a_delta_is_refused(delta: Path, base: Path) -> None:
    with pytest.raises(AirgapError, match="already a delta against base manifest sha256"):
        make_delta(delta, Bundle(base).manifest)


# --- check_delta -----------------------------------------------------------------------

def test_check_delta_refuses_the_wrong_base_naming_both_digests(
        delta: Path, full: Path) -> None:
    want = read_manifest(delta).base
    assert want is not None
    with pytest.raises(AirgapError) as err:
        check_delta(delta, full)
    got = sha256(Bundle(full).manifest)
    assert err.value.brief == (f"delta was made against base manifest sha256 "
                               f"{want.manifest_sha256}; {full}/manifest.json is sha256 {got}")
    assert err.value.resolution and "--since" in err.value.resolution


def test_check_delta_names_a_missing_and_a_damaged_file_in_the_base(
        delta: Path, base: Path) -> None:
    (base / "snaps" / "k8s.assert").unlink()
    data = bytearray((base / LAYER_A[0]).read_bytes())
    data[7] ^= 1
    (base / LAYER_A[0]).write_bytes(bytes(data))
    with pytest.raises(DeltaError) as err:
        check_delta(delta, base)
    problems = dict(err.value.problems)
    assert set(problems) == {"snaps/k8s.assert", LAYER_A[0]}
    assert problems["snaps/k8s.assert"] == f"in neither {delta} nor the base {base}"
    assert problems[LAYER_A[0]].startswith(f"{base / LAYER_A[0]}: sha256 ")
    assert "snaps/k8s.assert" in err.value.brief and LAYER_A[0] in err.value.brief


def test_check_delta_finds_every_file_where_it_is(delta: Path, base: Path) -> None:
    check = check_delta(delta, base)
    assert {r for r, p in check.sources.items() if p.is_relative_to(delta)} == CHANGED
    assert check.from_base == sorted(set(NEW_FILES) - CHANGED)
    assert {r: d.sha256 for r, d in check.digests.items()} == {
        r: hashlib.sha256(d).hexdigest() for r, d in NEW_FILES.items()}


def test_a_base_that_is_itself_a_delta_is_refused_and_a_merged_one_taken(
        delta: Path, base: Path, tmp_path: Path) -> None:
    third = write_bundle(tmp_path / "third", NEW_FILES | {"images.lock": b"third\n"},
                         "2025-03-01T00:00:00Z")
    make_delta(third, Bundle(delta).manifest)  # since the first delta's manifest
    with pytest.raises(AirgapError, match=rf"{delta}: the base is itself a delta") as err:
        check_delta(third, delta)
    assert err.value.resolution and "Merge" in err.value.resolution
    with pytest.raises(AirgapError, match="the base is itself a delta"):
        merge_delta(third, delta, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    merged = tmp_path / "merged"
    merge_delta(delta, base, merged)  # its manifest names a base, and it is whole
    assert check_delta(third, merged).from_base


# --- merge_delta -----------------------------------------------------------------------

def test_merge_equals_the_full_bundle_byte_for_byte(delta: Path, base: Path, full: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "merged"
    report = merge_delta(delta, base, out)
    assert shipped(out) == shipped(full)
    assert Bundle(out).manifest.read_bytes() == Bundle(delta).manifest.read_bytes()
    assert read_manifest(out).files == read_manifest(full).files
    assert report.files == len(NEW_FILES) and report.linked == report.files
    assert report.copied == 0 and report.from_base == len(NEW_FILES) - len(CHANGED)
    assert (out / LAYER_A[0]).stat().st_ino == (base / LAYER_A[0]).stat().st_ino
    assert not Bundle(out).partial_dir.exists()
    again = merge_delta(delta, base, out)
    assert again.already_present


def test_merge_copies_and_checks_where_it_cannot_link(
        delta: Path, base: Path, full: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delta_module, "_link", lambda src, dst: False)
    out = tmp_path / "copied"
    report = merge_delta(delta, base, out)
    assert shipped(out) == shipped(full)
    assert report.copied == len(NEW_FILES) and report.linked == 0
    assert (out / LAYER_A[0]).stat().st_ino != (base / LAYER_A[0]).stat().st_ino


def test_a_file_changed_after_the_check_is_refused_and_nothing_is_left(
        delta: Path, base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = delta_module.check_delta

    def check_then_damage(*args: object, **kw: bool) -> delta_module.DeltaCheck:
        check = real(*args, **kw)  # type: ignore[arg-type]
        (base / LAYER_A[0]).write_bytes(b"changed after the check")
        return check

    monkeypatch.setattr(delta_module, "check_delta", check_then_damage)
    out = tmp_path / "out"
    with pytest.raises(AirgapError, match="changed since it was checked"):
        merge_delta(delta, base, out)
    assert not out.exists()


def test_merge_refuses_the_base_or_the_delta_as_out(delta: Path, base: Path) -> None:
    for out in (base, delta, base / "inside"):
        with pytest.raises(AirgapError, match="or inside it"):
            merge_delta(delta, base, out)


# --- verify and unpack -----------------------------------------------------------------

def test_verify_refuses_a_delta_alone_and_a_full_bundle_with_a_base(
        delta: Path, base: Path, full: Path) -> None:
    digest = sha256(Bundle(base).manifest)
    with pytest.raises(AirgapError) as err:
        verify_bundle(delta, check_signatures=False)
    assert err.value.brief == (
        f"{delta} is a delta bundle against base manifest sha256 {digest}: pass --base with "
        "the bundle the site last received, or merge them first")
    with pytest.raises(AirgapError, match="not a delta bundle"):
        verify_bundle(full, check_signatures=False, base=base)


def test_verify_with_base_names_what_the_base_lacks(delta: Path, base: Path) -> None:
    from airgap.bundle.verify import BundleError

    (base / "images.lock").unlink()  # the delta has its own: not needed
    (base / LAYER_A[0]).unlink()
    with pytest.raises(BundleError) as err:
        verify_bundle(delta, check_signatures=False, base=base)
    assert [(r.path, r.ok) for r in err.value.report.rows] == [(LAYER_A[0], False)]


def test_unpack_with_base_gives_the_full_bundle(delta: Path, base: Path, full: Path,
                                                tmp_path: Path) -> None:
    parts, dest = tmp_path / "media", tmp_path / "site" / "bundle"
    pack(delta, parts, 20_000)
    report = unpack(parts, dest, base=base, consume=True)
    assert report.dest == dest and report.consumed
    assert shipped(dest) == shipped(full)
    assert Bundle(dest).manifest.read_bytes() == Bundle(delta).manifest.read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        {r.split("/")[0] for r in NEW_FILES} | {"manifest.json"})


def test_unpack_onto_the_wrong_base_writes_and_consumes_nothing(
        delta: Path, full: Path, tmp_path: Path) -> None:
    parts, dest = tmp_path / "media", tmp_path / "site" / "bundle"
    pack(delta, parts, 20_000)
    before = sorted(p.name for p in parts.iterdir())
    with pytest.raises(AirgapError, match="delta was made against base manifest sha256"):
        unpack(parts, dest, base=full, consume=True)
    assert not (tmp_path / "site").exists()
    assert sorted(p.name for p in parts.iterdir()) == before
