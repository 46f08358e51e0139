"""Getting snaps: `snap download` on the connected side, or a folder of files someone
downloaded elsewhere (`invoke prepare --from DIR`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from airgap import process
from airgap.errors import AirgapError, CommandError
from airgap.snaps.verify import SnapError

DOWNLOAD_TIMEOUT = 3600.0
FROM_RESOLUTION = (
    "On a machine that can reach the Snap Store run `snap download k8s --channel CHANNEL "
    "--basename k8s`, then `snap download BASE --basename BASE` for the base snap named by "
    "`base:` in k8s's meta/snap.yaml (`unsquashfs -cat k8s.snap meta/snap.yaml`; core22 "
    "today) and `snap download snapd --basename snapd`, copy the .snap and "
    ".assert files into one directory, then run `invoke prepare --from DIR`."
)


def download_snap(name: str, channel: str, target: Path) -> tuple[Path, Path]:
    """`snap download` into target; a missing `snap` or store gives the --from resolution."""
    snap_cmd = shutil.which("snap")
    if snap_cmd is None:
        raise SnapError(
            f"cannot download {name}: the `snap` command is not installed here",
            resolution=FROM_RESOLUTION,
        )
    target.mkdir(parents=True, exist_ok=True)
    argv = [
        snap_cmd,
        "download",
        name,
        f"--channel={channel}",
        f"--basename={name}",
        f"--target-directory={target}",
    ]
    try:
        process.run(argv, timeout=DOWNLOAD_TIMEOUT)
    except CommandError as exc:
        raise SnapError(
            f"`snap download {name}` failed (is the Snap Store reachable from here?)",
            details=exc.details,
            resolution=FROM_RESOLUTION,
        ) from None
    except AirgapError as exc:
        raise SnapError(
            f"`snap download {name}` did not finish: {exc.brief}", resolution=FROM_RESOLUTION
        ) from None
    snap, assertion = target / f"{name}.snap", target / f"{name}.assert"
    if not snap.is_file() or not assertion.is_file():
        raise SnapError(
            f"`snap download {name}` wrote no {snap.name} / {assertion.name}",
            resolution=FROM_RESOLUTION,
        )
    return snap, assertion


def find_local_snap(from_dir: Path, name: str) -> tuple[Path, Path]:
    """NAME.snap or NAME_REV.snap (snap download's default name) with its .assert."""
    candidates = sorted({*from_dir.glob(f"{name}.snap"), *from_dir.glob(f"{name}_*.snap")})
    candidates = [c for c in candidates if c.stem == name or c.stem[len(name) + 1 :].isdigit()]
    if not candidates:
        raise SnapError(
            f"{from_dir}: no {name}.snap (or {name}_REVISION.snap)",
            resolution=f"Download it with `snap download {name} --basename {name}` "
            "on a connected machine and copy the .snap and .assert here.",
        )
    if len(candidates) > 1:
        raise SnapError(
            f"{from_dir}: several snaps for {name}: " + ", ".join(c.name for c in candidates),
            resolution="Keep only the one to ship.",
        )
    snap = candidates[0]
    assertion = snap.with_suffix(".assert")
    if not assertion.is_file():
        raise SnapError(
            f"{from_dir}: {snap.name} has no {assertion.name} next to it",
            resolution="Copy the .assert that `snap download` wrote with it.",
        )
    return snap, assertion


def copy_file(src: Path, dst: Path) -> None:
    """Copy to a temporary name next to dst, then rename: no half-written snap."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
