"""A fresh Debian 12 has what the product, the lab and the tests run: checked in a chroot.

A warm machine hides missing packages (something else pulled them in); a debootstrap
chroot does not. The test installs exactly `.ci/run`'s APT_PACKAGES, with the same
flags, into a fresh `--variant=minbase` Debian of this machine's release, from the
mirror this machine's apt uses, and finds every non-optional apt-provided binary of
airgap/data/binaries.toml there. The node binaries are checked in the lab's image.

Debootstrap's and apt's downloads are kept in the cache (/var/cache/k8s-airgap/
fresh-machine/), so a re-run downloads nothing; the chroot itself is always new.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airgap import binaries
from lab import image as lab_image
from tests.support.require import require_binary, require_root
from tests.support.taskrun import ROOT

pytestmark = pytest.mark.integration

CI_RUN = ROOT / ".ci" / "run"
SEARCH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def ci_apt_packages(text: str) -> list[str]:
    """The APT_PACKAGES=( ... ) array of .ci/run, comments dropped."""
    m = re.search(r"^APT_PACKAGES=\((.*?)^\)", text, re.S | re.M)
    assert m, f"{CI_RUN}: no APT_PACKAGES=( ... ) array"
    words: list[str] = []
    for line in m.group(1).splitlines():
        words += line.split("#", 1)[0].split()
    return words


def _run(argv: list[str], timeout: float = 1800) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env={"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C",
                               "PATH": SEARCH})
    assert proc.returncode == 0, f"{argv[:4]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def fresh_chroot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root()
    require_binary("debootstrap")
    require_binary("chroot")
    recipe = lab_image.default_recipe()
    cache = lab_image.cache_dir() / "fresh-machine"
    debs, archives = cache / "debootstrap", cache / "apt-archives"
    debs.mkdir(parents=True, exist_ok=True)
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("fresh") / "root"
    mounts: list[Path] = []
    try:
        _run(["debootstrap", "--variant=minbase", f"--arch={recipe.arch}",
              f"--cache-dir={debs}", recipe.suite, str(root), recipe.mirror])
        # apt's sources as this machine has them (the release's updates and security).
        for src in [Path("/etc/apt/sources.list"),
                    *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
            if src.is_file() and src.name.endswith((".list", ".sources")):
                dest = root / "etc/apt" / src.relative_to("/etc/apt")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
        policy = root / "usr/sbin/policy-rc.d"  # no daemon starts in the chroot
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        for what, where, opts in (("proc", "proc", ["-t", "proc"]),
                                  (str(archives), "var/cache/apt/archives", ["--bind"])):
            target = root / where
            target.mkdir(parents=True, exist_ok=True)
            _run(["mount", *opts, what, str(target)])
            mounts.append(target)
        yield root
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)


def test_ci_run_installs_every_listed_binary_on_a_fresh_debian(fresh_chroot: Path) -> None:
    packages = ci_apt_packages(CI_RUN.read_text())
    apt = ["chroot", str(fresh_chroot), "apt-get", "-o", "Dpkg::Use-Pty=0"]
    _run([*apt, "update", "-qq"], timeout=600)
    # The same command as .ci/run's.
    _run([*apt, "install", "-y", "-qq", "--no-install-recommends", *packages])

    wanted = [b for b in binaries.host_binaries().values() if b.apt_package and not b.optional]
    script = "; ".join(
        f'if command -v {b.name} >/dev/null; then echo "{b.name} ok"; '
        f'else echo "{b.name} missing"; fi' for b in wanted)
    proc = subprocess.run(["chroot", str(fresh_chroot), "/bin/sh", "-c", script],
                          capture_output=True, text=True, check=True, env={"PATH": SEARCH})
    found = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    missing = [f"{b.name} ({b.apt_package})" for b in wanted if found.get(b.name) != "ok"]
    assert not missing, (
        f"a fresh Debian with .ci/run's APT_PACKAGES lacks: {', '.join(missing)}; "
        "add the packages to APT_PACKAGES")
    print(f"fresh {lab_image.default_recipe().suite} chroot: {len(packages)} apt packages, "
          f"{len(wanted)} listed binaries, all present")


def test_every_listed_host_package_is_one_ci_run_installs_or_debian_requires() -> None:
    # A binary whose package .ci/run does not name is there only if minbase has it.
    packages = set(ci_apt_packages(CI_RUN.read_text()))
    required_by_debian = {"mount", "passwd", "tar", "util-linux", "coreutils", "libc-bin", "dash"}
    wanted = {b.apt_package for b in binaries.host_binaries().values()
              if b.apt_package and not b.optional}
    assert wanted - packages - required_by_debian == set()


def test_the_lab_image_has_every_node_binary() -> None:
    tarball = lab_image.tarball_path(lab_image.default_recipe())
    from tests.support.require import need
    need(tarball.exists(), f"the lab image is not built ({tarball}): run `invoke lab.image`")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    nodes = [b for b in binaries.load().values() if b.on == "node" and not b.optional]
    dirs = ("rootfs/usr/bin", "rootfs/usr/sbin", "rootfs/bin", "rootfs/sbin")
    missing = [f"{b.name} ({b.apt_package})" for b in nodes
               if not any(f"{d}/{b.name}" in names for d in dirs)]
    assert not missing, f"the lab image {tarball.name} lacks node binaries: {missing}"
