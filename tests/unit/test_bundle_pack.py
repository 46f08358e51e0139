"""pack and unpack on temporary directories: round trips whose parts cut files mid-way,
every refusal (missing, damaged, truncated parts, no index, no room, another pack or
bundle in the way, paths that escape) and that a refusal writes nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import threading
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest

from airgap.bundle import pack as pack_module
from airgap.bundle.manifest import Manifest, write_manifest
from airgap.bundle.pack import FAT32, INDEX, PackIndex, parse_size
from airgap.bundle.pack import pack as pack_bundle
from airgap.bundle.unpack import space_needed, unpack
from airgap.errors import AirgapError, CommandError
from airgap.snaps import FileDigests

MiB = 1024 * 1024


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def write_bundle(root: Path, files: dict[str, bytes], signature: bool = True) -> Path:
    """A bundle: the files, a manifest over them, its signature, and what never crosses."""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    digests = {rel: FileDigests(len(d), hashlib.sha256(d).hexdigest()) for rel, d in files.items()}
    write_manifest(root, Manifest(files=digests, snaps=[], images=[], platforms=[], tools={}))
    if signature:
        (root / "manifest.json.sig").write_text("-----BEGIN SSH SIGNATURE-----\nxx\n")
    (root / "connected").mkdir()
    (root / "connected" / "cache.bin").write_bytes(b"connected side only")
    (root / ".partial").mkdir()
    (root / ".partial" / "download").write_bytes(b"half a download")
    return root


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "bundle", {
        "snaps/k8s_1234.snap": random_bytes(150_000, 1),  # incompressible
        "snaps/k8s_1234.assert": b"type: snap-revision\n" * 300,
        "oci/blobs/sha256/aa": gzip.compress(random_bytes(60_000, 2)),  # an image layer
        "oci/blobs/sha256/bb": b'{"schemaVersion": 2, "config": "abc"}\n' * 2000,
        "oci/index.json": b'{"manifests": []}',
        "oci/empty": b"",
        "images.lock": ("docker.io/library/pause:3.10@sha256:" + "ab" * 32 + "\n").encode() * 500,
        "deep/a/b/c/d.txt": b"nested\n",
    })


def tree(root: Path) -> dict[str, bytes]:
    """Every file that crosses the gap, with its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and rel.parts[0] not in ("connected", ".partial"):
            out[rel.as_posix()] = p.read_bytes()
    return out


def index_of(out: Path) -> PackIndex:
    return PackIndex.model_validate_json((out / INDEX).read_bytes())


def part_paths(out: Path) -> list[Path]:
    return sorted(out.glob("*.part-*"))


# --- parse_size -----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "size"), [
    ("4G", 4 * 1024**3), ("4GiB", 4 * 1024**3), ("4gb", 4 * 1024**3), ("700M", 700 * MiB),
    ("650MB", 650 * MiB), ("4000000000", 4_000_000_000), ("fat32", 4 * 1024**3 - 1),
    ("FAT32", FAT32), ("64K", 65536), ("1.5G", 3 * 1024**3 // 2), ("1T", 1024**4),
    (" 4 GiB ", 4 * 1024**3), ("1000B", 1000), ("1", 1),
])
def test_parse_size_takes_bytes_and_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "0G", "-1", "-4G", "", "four", "4X", "4 GB extra",
                                  "0.0001K", "1e9", "G"])
def test_parse_size_refuses_nonsense_naming_the_flag(text: str) -> None:
    with pytest.raises(AirgapError) as err:
        parse_size(text)
    assert "--part-size" in err.value.brief
    assert err.value.resolution and "fat32" in err.value.resolution


# --- round trips ----------------------------------------------------------------------

@pytest.mark.parametrize("part_size", [1000, 64 * 1024, 10 * MiB])
def test_round_trip_is_byte_for_byte(bundle: Path, tmp_path: Path, part_size: int) -> None:
    out, dest = tmp_path / "media", tmp_path / "restored"
    report = pack_bundle(bundle, out, part_size)

    parts = part_paths(out)
    assert [p.name for p in parts] == [p.name for p in report.parts]
    assert all(p.stat().st_size <= part_size for p in parts)
    assert all(p.stat().st_size == part_size for p in parts[:-1])
    assert sum(p.stat().st_size for p in parts) == report.bytes_out
    assert index_of(out) == report.index
    if part_size == 1000:
        assert len(parts) > 100  # files and their boundaries cut mid-way, many times

    result = unpack(out, dest)
    assert tree(dest) == tree(bundle)
    assert (dest / "manifest.json.sig").exists()
    assert not (dest / "connected").exists() and not (dest / ".partial").exists()
    assert result.bytes_out == report.bytes_in and not result.consumed
    assert len(part_paths(out)) == len(parts)  # kept without consume


def test_auto_compresses_only_what_shrinks(bundle: Path, tmp_path: Path) -> None:
    report = pack_bundle(bundle, tmp_path / "media", 64 * 1024)
    by_path = {f.path: f for f in report.files}

    for text in ("images.lock", "oci/blobs/sha256/bb", "snaps/k8s_1234.assert"):
        assert by_path[text].compressed, text
        assert by_path[text].ratio < 0.1 and by_path[text].sample_ratio is not None
    for dense in ("snaps/k8s_1234.snap", "oci/blobs/sha256/aa"):
        assert not by_path[dense].compressed, dense
        # The in-process zlib probe saw it would not pay: no zstd run, no sample ratio.
        assert by_path[dense].sample_ratio is None
        assert by_path[dense].stored == by_path[dense].size
    assert not by_path["oci/empty"].compressed and by_path["oci/empty"].stored == 0
    assert report.bytes_out < report.bytes_in and 0 < report.ratio < 1
    assert report.ratio == pytest.approx(report.bytes_out / report.bytes_in)
    assert set(by_path) == set(tree(bundle))  # manifest, signature; never connected/.partial
    entry = json.loads((tmp_path / "media" / INDEX).read_text())["files"][0]
    assert {"path", "size", "sha256", "compressed", "sample_ratio"} <= set(entry)


def test_never_and_always(bundle: Path, tmp_path: Path) -> None:
    never = pack_bundle(bundle, tmp_path / "never", 4096, compress="never")
    assert not any(f.compressed for f in never.files) and never.bytes_out == never.bytes_in
    always = pack_bundle(bundle, tmp_path / "always", 4096, compress="always")
    assert all(f.compressed for f in always.files if f.size)
    unpack(tmp_path / "always", tmp_path / "dest")
    assert tree(tmp_path / "dest") == tree(bundle)
    with pytest.raises(AirgapError, match="--compress"):
        pack_bundle(bundle, tmp_path / "x", 4096, compress="sometimes")
    with pytest.raises(AirgapError, match="--part-size"):
        pack_bundle(bundle, tmp_path / "x", 0)


def test_a_file_larger_than_the_sample_is_streamed(tmp_path: Path) -> None:
    big_text = b"".join(b"line %08d of a log that compresses well\n" % i for i in range(300_000))
    assert len(big_text) > pack_module.SAMPLE
    bundle = write_bundle(tmp_path / "b", {"images/big.tar": big_text,
                                           "snaps/x.snap": random_bytes(9 * MiB, 3)})
    report = pack_bundle(bundle, tmp_path / "media", 3 * MiB)
    by_path = {f.path: f for f in report.files}
    assert by_path["images/big.tar"].compressed and by_path["images/big.tar"].ratio < 0.2
    assert not by_path["snaps/x.snap"].compressed
    unpack(tmp_path / "media", tmp_path / "dest", consume=True)
    assert tree(tmp_path / "dest") == tree(bundle)


def test_progress_reports_parts_bytes_and_rates(bundle: Path, tmp_path: Path) -> None:
    said: list[str] = []
    pack_bundle(bundle, tmp_path / "media", 64 * 1024, progress=said.append)
    assert said and all("/s" in line and " of " in line for line in said)
    assert said[-1].startswith("packed 10 files into")
    said.clear()
    unpack(tmp_path / "media", tmp_path / "dest", progress=said.append)
    assert any(line.startswith("checked 1/") and " parts" in line for line in said)
    assert said[-1].startswith("unpacked 10 files") and said[-1].endswith("iB/s")


def test_consume_deletes_each_part_and_still_round_trips(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "media"
    report = pack_bundle(bundle, out, 2000)
    result = unpack(out, tmp_path / "dest", consume=True)
    assert tree(tmp_path / "dest") == tree(bundle)
    assert result.consumed == [p.name for p in report.parts]
    assert part_paths(out) == [] and (out / INDEX).exists()


def test_consume_deletes_a_part_as_soon_as_it_is_read(bundle: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "media"
    pack_bundle(bundle, out, 4096, compress="never")
    left_when_written: list[int] = []
    real_open = os.open

    def spy(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if str(path).startswith(str(tmp_path / "dest")) and flags & os.O_CREAT:
            left_when_written.append(len(part_paths(out)))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", spy)
    unpack(out, tmp_path / "dest", consume=True)
    assert left_when_written == sorted(left_when_written, reverse=True)
    assert left_when_written[0] > left_when_written[-1] > 0


# --- refusals: the parts --------------------------------------------------------------

@pytest.fixture
def packed(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "media"
    pack_bundle(bundle, out, 20_000)
    assert len(part_paths(out)) >= 8
    return out


def refused(parts: Path, dest: Path, **kw: bool) -> AirgapError:
    """unpack refuses, and dest is left as it was (here: not there at all)."""
    with pytest.raises(AirgapError) as err:
        unpack(parts, dest, **kw)
    assert not dest.exists(), "a refused unpack wrote into dest"
    return err.value


def test_a_missing_part_is_named(packed: Path, tmp_path: Path) -> None:
    parts = part_paths(packed)
    parts[2].unlink()
    parts[5].unlink()
    err = refused(packed, tmp_path / "dest")
    assert parts[2].name in err.brief and parts[5].name in err.brief
    assert "2 of" in err.brief
    assert f"{parts[2].name}: missing" in str(err.details)
    assert "0001..0002, 0004..0005, 0007.." in str(err.details)
    assert err.resolution and "media" in err.resolution


def test_a_damaged_part_is_named_and_the_others_reported_fine(packed: Path,
                                                               tmp_path: Path) -> None:
    parts = part_paths(packed)
    data = bytearray(parts[3].read_bytes())
    data[len(data) // 2] ^= 0x01
    parts[3].write_bytes(data)
    err = refused(packed, tmp_path / "dest")
    assert parts[3].name in err.brief and "1 of" in err.brief
    assert f"{parts[3].name}: damaged" in str(err.details)
    fine_line = str(err.details).splitlines()[-1]
    assert fine_line.startswith(f"fine ({len(parts) - 1})")
    assert f"0001..0003, 0005..{len(parts):04d}" in fine_line


def test_a_truncated_part_is_named(packed: Path, tmp_path: Path) -> None:
    last = part_paths(packed)[-1]
    last.write_bytes(last.read_bytes()[:-1])
    err = refused(packed, tmp_path / "dest", consume=True)
    assert f"{last.name}: truncated" in str(err.details)
    assert last.exists() and len(part_paths(packed)) >= 8  # consume deleted nothing


def test_a_missing_index_is_refused(packed: Path, tmp_path: Path) -> None:
    (packed / INDEX).unlink()
    err = refused(packed, tmp_path / "dest")
    assert "index.json" in err.brief and "last" in err.brief


@pytest.mark.parametrize("edit", [
    lambda d: d.update(version=2),
    lambda d: d["parts"][0].update(sha256="xyz"),
    lambda d: d["files"].pop(0),
    lambda d: d["parts"][1].update(name="../elsewhere.part-0002"),
    lambda d: d.update(total=d["total"] + 1),
    lambda d: d.update(files_total=d["files_total"] - 1),
    lambda d: d["parts"][-1].update(size=d["parts"][-1]["size"] + 1),
    lambda d: d["files"][1].update(stored=d["files"][1]["stored"] + 1),
    lambda d: d["files"].append(dict(d["files"][-1])),  # listed twice
    lambda d: d.update(files=[f for f in d["files"] if f["path"] != "manifest.json"]),
])
def test_a_bad_index_is_refused(packed: Path, tmp_path: Path, edit: object) -> None:
    doc = json.loads((packed / INDEX).read_text())
    edit(doc)  # type: ignore[operator]
    (packed / INDEX).write_text(json.dumps(doc))
    err = refused(packed, tmp_path / "dest")
    assert "index.json" in err.brief and err.resolution


@pytest.mark.parametrize("path", ["../evil", "/etc/evil", "snaps/../../evil", "a//b",
                                  ".partial/x", "connected/x", "./x"])
def test_paths_that_escape_dest_are_refused(packed: Path, tmp_path: Path, path: str) -> None:
    doc = json.loads((packed / INDEX).read_text())
    doc["files"][0]["path"] = path
    (packed / INDEX).write_text(json.dumps(doc))
    err = refused(packed, tmp_path / "dest")
    assert repr(path) in err.brief
    assert not (tmp_path / "evil").exists()


def test_a_symlink_in_dest_is_refused(packed: Path, tmp_path: Path) -> None:
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "snaps").symlink_to(elsewhere)
    with pytest.raises(AirgapError, match="snaps"):
        unpack(packed, dest)
    assert list(elsewhere.iterdir()) == [] and sorted(os.listdir(dest)) == ["snaps"]


# --- refusals: dest -------------------------------------------------------------------

def test_not_enough_free_space_is_refused_with_numbers(packed: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    index = index_of(packed)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 1234))
    err = refused(packed, tmp_path / "dest")
    assert "not enough free space" in err.brief
    assert f"({index.files_total} bytes)" in err.brief and "(1234 bytes)" in err.brief
    assert "rule: the bundle's size" in str(err.details)
    assert "consume" in str(err.resolution)

    err = refused(packed, tmp_path / "dest", consume=True)
    need = space_needed(index, consuming=True)
    assert need < index.files_total
    assert f"({need} bytes)" in err.brief and "parts already deleted" in str(err.details)

    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 0, need))
    unpack(packed, tmp_path / "dest", consume=True)  # exactly enough


def test_space_needed_with_consume_is_about_one_part(bundle: Path, tmp_path: Path) -> None:
    pack_bundle(bundle, tmp_path / "plain", 10_000, compress="never")
    plain = index_of(tmp_path / "plain")
    assert space_needed(plain, consuming=False) == plain.files_total
    assert space_needed(plain, consuming=True) == 10_000  # written, not yet freed: one part
    pack_bundle(bundle, tmp_path / "packed", 10_000, compress="always")
    packed = index_of(tmp_path / "packed")
    # a compressed file counts whole once begun: more than a part, less than the bundle
    assert 10_000 < space_needed(packed, consuming=True) <= packed.files_total


def test_dest_holding_another_bundle_is_refused(packed: Path, tmp_path: Path) -> None:
    other = write_bundle(tmp_path / "other", {"images.lock": b"other\n"})
    before = tree(other)
    with pytest.raises(AirgapError, match="different bundle"):
        unpack(packed, other)
    assert tree(other) == before


def test_dest_holding_this_bundle_already_is_left_alone(packed: Path, tmp_path: Path,
                                                         bundle: Path) -> None:
    unpack(packed, tmp_path / "dest")
    again = unpack(packed, tmp_path / "dest", consume=True)
    assert again.already_present and not again.consumed and part_paths(packed)
    assert tree(tmp_path / "dest") == tree(bundle)


def test_an_empty_dest_stays_empty_when_refused(packed: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    part_paths(packed)[0].unlink()
    with pytest.raises(AirgapError):
        unpack(packed, dest)
    assert list(dest.iterdir()) == []


def _rewrite_stream_byte(packed: Path, path: str) -> None:
    """Flip a byte of one file's stored bytes and fix the part's sha256 in the index, so
    the part check passes and only the file's own check can notice."""
    doc = json.loads((packed / INDEX).read_text())
    entry = next(f for f in doc["files"] if f["path"] == path)
    position = entry["offset"] + entry["stored"] // 2
    part = doc["parts"][position // doc["part_size"]]
    data = bytearray((packed / part["name"]).read_bytes())
    data[position % doc["part_size"]] ^= 0x40
    (packed / part["name"]).write_bytes(data)
    part["sha256"] = hashlib.sha256(data).hexdigest()
    (packed / INDEX).write_text(json.dumps(doc))


@pytest.mark.parametrize(("path", "consume"), [
    ("snaps/k8s_1234.snap", False), ("images.lock", False),  # stored as is; compressed
    ("snaps/k8s_1234.snap", True), ("oci/blobs/sha256/bb", True),  # after 3+ parts
])
def test_each_file_is_checked_on_the_way_out(packed: Path, tmp_path: Path, path: str,
                                             consume: bool) -> None:
    _rewrite_stream_byte(packed, path)
    dest = tmp_path / "dest"
    with pytest.raises(AirgapError) as err:
        unpack(packed, dest, consume=consume)
    assert path in str(err.value)
    assert not dest.exists()  # the partial work is removed, dest with it
    if consume:
        assert "consume had already deleted" in str(err.value.details)


# --- refusals: pack -------------------------------------------------------------------

def test_pack_refuses_a_bundle_without_manifest(bundle: Path, tmp_path: Path) -> None:
    (bundle / "manifest.json").unlink()
    with pytest.raises(AirgapError) as err:
        pack_bundle(bundle, tmp_path / "media", 4096)
    assert "manifest.json" in err.value.brief and "invoke prepare" in str(err.value.resolution)
    assert not (tmp_path / "media").exists()


def test_pack_refuses_out_holding_another_pack(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "media"
    pack_bundle(bundle, out, 50_000)
    other = write_bundle(tmp_path / "other", {"images.lock": b"other\n"})
    before = sorted(os.listdir(out))
    with pytest.raises(AirgapError, match="another bundle"):
        pack_bundle(other, out, 50_000)
    with pytest.raises(AirgapError, match="this bundle"):
        pack_bundle(bundle, out, 50_000)
    (out / INDEX).unlink()  # now: parts of an unfinished pack of `bundle`
    with pytest.raises(AirgapError, match="another, unfinished pack"):
        pack_bundle(other, out, 50_000)
    assert sorted(os.listdir(out)) == [n for n in before if n != INDEX]
    pack_bundle(bundle, out, 50_000)  # its own unfinished parts are replaced
    assert sorted(os.listdir(out)) == before


def test_pack_refuses_out_inside_the_bundle(bundle: Path) -> None:
    with pytest.raises(AirgapError, match="inside the bundle"):
        pack_bundle(bundle, bundle / "connected" / "media", 4096)


def test_a_failed_pack_leaves_no_parts(bundle: Path, tmp_path: Path) -> None:
    (bundle / "oci" / "index.json").write_bytes(b'{"manifests": [1]}')  # not what it was
    out = tmp_path / "media"
    with pytest.raises(AirgapError) as err:
        pack_bundle(bundle, out, 1000)
    assert "oci/index.json" in err.value.brief and "manifest" in err.value.brief
    assert list(out.iterdir()) == []


# --- zstd as a stream filter ----------------------------------------------------------

def test_zstd_filter_failures_neither_hang_nor_pass_silently() -> None:
    data = random_bytes(5 * MiB, 4)  # more than a pipe holds: the feeder must not block
    with pytest.raises(CommandError) as err:
        list(pack_module.zstd_filter(["-d"], pack_module.pieces(data)))  # not zstd data
    assert err.value.argv[:2] == ["zstd", "-d"] and err.value.returncode != 0

    def broken() -> Iterator[bytes]:
        yield b"abc"
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        list(pack_module.zstd_filter(["-3"], broken()))
    stream = pack_module.zstd_filter(["-3"], pack_module.pieces(data))
    next(stream)
    stream.close()  # the reader stopped early: zstd is stopped, the feeder ends
    assert threading.active_count() == 1
    packed = b"".join(pack_module.zstd_filter(["-3"], pack_module.pieces(data)))
    assert b"".join(pack_module.zstd_filter(["-d"], [packed])) == data


def test_an_unreadable_bundle_file_is_named(bundle: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, *args: object, **kw: object) -> object:
        if str(path).endswith("k8s_1234.snap"):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(pack_module, "open", refuse, raising=False)
    with pytest.raises(AirgapError) as err:
        pack_bundle(bundle, tmp_path / "media", 1000)
    assert err.value.brief == f"{bundle / 'snaps' / 'k8s_1234.snap'}: Permission denied"
    assert list((tmp_path / "media").iterdir()) == []


def test_a_dest_that_cannot_be_made_is_named(packed: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, *args: object, **kw: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    err = refused(packed, tmp_path / "dest")
    assert "Permission denied" in err.brief and str(tmp_path / "dest") in err.brief
    assert len(part_paths(packed)) >= 8
