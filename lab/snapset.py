"""Stand-in snaps that a real snapd installs: a base, snapd and a classic ``k8s``.

The lab's nodes run Debian's snapd, which installs what `invoke deploy` hands it. The
k8s snap cannot be downloaded here, so the lab builds three snaps snapd accepts with
--dangerous (it trusts no root but Canonical's, so the lab authority's assertions are
refused by `snap ack`; deploy's ``--dangerous`` is the one lab switch, named in every
report):

- a base (type: base): busybox and the mount points snapd bind-mounts (FACTS);
- snapd (type: snapd): only usr/lib/snapd/info, copied from the node's snapd, so that
  the snap command does not re-exec into a snap that has no snapd in it;
- k8s (classic, base core22), files in lab/snap/: its ``containerd`` app runs the
  node's real containerd with the k8s snap's classic paths and imports side-loaded
  archives at start; its ``k8s`` command is a stand-in CLI that says so and keeps real
  state (bootstrap, join tokens bound to a name, joins presented over HTTP to the
  ``k8sd`` app on the bootstrap node, `kubectl get node`). Both daemons are installed
  disabled and started by bootstrap/join, as the real snap's are.

Two k8s versions built from the same files differ in version only: a newer one
installed over an older one is a refresh. Each snap comes with assertions signed by a
lab :class:`lab.standin.Authority`, so prepare and verify check them exactly as they
check Canonical's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.standin import Authority, build_snap

FILES = Path(__file__).parent / "snap"
BUSYBOX = Path("/bin/busybox")
DEFAULT_BASE = "core22"
DEFAULT_K8S_VERSION = "1.36.0"

# What snapd needs in a base it mounts: a shell and the usual empty mount points.
BASE_DIRS = ("dev", "etc", "home", "root", "proc", "sys", "tmp", "run", "media", "mnt",
             "snap", "var/snap", "var/lib/snapd", "var/tmp", "var/log", "var/lib", "usr/src",
             "usr/lib/snapd", "lib/modules", "lib/firmware", "writable")

K8S_META = """name: k8s
version: '{version}'
summary: k8s stand-in (k8s-airgap lab), not Canonical Kubernetes
description: |
  Built by the k8s-airgap lab to exercise snapd. The containerd app runs the node's
  containerd; the k8s command is a stand-in CLI. Not published anywhere.
base: {base}
confinement: classic
grade: stable
apps:
  k8s:
    command: bin/k8s
  containerd:
    command: bin/containerd
    daemon: simple
    install-mode: disable
  k8sd:
    command: bin/k8sd
    daemon: simple
    install-mode: disable
"""
K8S_SCRIPTS = ("k8s", "containerd", "k8sd", "join.cgi", "nodes.cgi")


def build_base(directory: Path, name: str = DEFAULT_BASE) -> Path:
    files = {f"{d}/.keep": b"" for d in BASE_DIRS}
    files["bin/busybox"] = BUSYBOX.read_bytes()
    return build_snap(directory, name, snap_type="base", files=files)


def build_snapd(directory: Path, snapd_info: str) -> Path:
    """``snapd_info``: the node's /usr/lib/snapd/info (its VERSION= is the snap's)."""
    return build_snap(directory, "snapd", version=info_version(snapd_info), snap_type="snapd",
                      files={"usr/lib/snapd/info": snapd_info.encode()})


def build_k8s(directory: Path, *, version: str = DEFAULT_K8S_VERSION, base: str = DEFAULT_BASE,
              images: Sequence[str] = ()) -> Path:
    """The classic k8s stand-in; ``images`` becomes its images.txt, as the real snap's."""
    files = {"meta/snap.yaml": K8S_META.format(version=version, base=base).encode(),
             "etc/containerd.toml": (FILES / "containerd.toml").read_bytes(),
             "bin/busybox": BUSYBOX.read_bytes()}
    modes = {"bin/busybox": 0o755}
    for script in K8S_SCRIPTS:
        files[f"bin/{script}"] = (FILES / script).read_bytes()
        modes[f"bin/{script}"] = 0o755
    return build_snap(directory, "k8s", images=images, files=files, modes=modes)


def build_snapd_set(directory: Path, *, snapd_info: str, base: str = DEFAULT_BASE,
                    k8s_version: str = DEFAULT_K8S_VERSION,
                    images: Sequence[str] = ()) -> dict[str, Path]:
    """The three snap files (no assertions), by name."""
    directory.mkdir(parents=True, exist_ok=True)
    return {base: build_base(directory, base), "snapd": build_snapd(directory, snapd_info),
            "k8s": build_k8s(directory, version=k8s_version, base=base, images=images)}


def signed_snapd_set(directory: Path, authority: Authority, *, snapd_info: str,
                     base: str = DEFAULT_BASE, k8s_version: str = DEFAULT_K8S_VERSION,
                     k8s_revision: str = "101",
                     images: Sequence[str] = ()) -> dict[str, tuple[Path, Path]]:
    """The three snaps with the .assert `snap download` would write, signed by ``authority``
    (what `invoke prepare --from DIR` takes)."""
    snaps = build_snapd_set(directory, snapd_info=snapd_info, base=base,
                            k8s_version=k8s_version, images=images)
    out = {}
    for n, (name, snap) in enumerate(sorted(snaps.items())):
        assertion = directory / f"{name}.assert"
        rev = k8s_revision if name == "k8s" else str(100 + n)
        assertion.write_bytes(authority.assert_for(snap, name, revision=rev))
        out[name] = (snap, assertion)
    return out


def info_version(info: str) -> str:
    for line in info.splitlines():
        if line.startswith("VERSION="):
            return line.split("=", 1)[1].split("-", 1)[0] or "0"
    return "0"
