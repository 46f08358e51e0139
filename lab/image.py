"""The lab's base image: one Debian rootfs with every role's packages.

No image server is reachable from these machines, so the image is built locally with
debootstrap (from the Debian mirror apt already uses), tarred with a metadata.yaml and
imported into LXD. One image serves every role (services are disabled in the image and
enabled per role), which keeps the build to one debootstrap and the import to one
upload. The tarball is cached under a name derived from a hash of the recipe, so a
second ``lab.image`` is a file lookup.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from airgap import process
from airgap.errors import AirgapError
from airgap.render.systemd import unit_file

log = logging.getLogger(__name__)

IMAGE_PREFIX = "k8s-airgap-base"
RECIPE_VERSION = 2

# What each role needs; the image carries the union.
ROLE_PACKAGES: dict[str, tuple[str, ...]] = {
    "base": ("systemd-sysv", "udev", "iproute2", "ca-certificates", "curl", "openssl",
             "python3", "iptables", "netbase", "procps"),
    "registry": ("docker-registry",),
    "upstream": ("docker-registry",),
    "proxy": ("squid",),
    "node": ("containerd",),
    "bastion": (),
}

# Installed with apt after debootstrap: snapd's postinst fails inside debootstrap's
# second stage, and succeeds in the finished chroot (policy-rc.d, /proc mounted). In a
# container there are no loop devices, so snapd mounts snaps with squashfuse (fuse3).
LATE_PACKAGES: tuple[str, ...] = ("snapd", "squashfuse", "fuse3")

# Installed by Debian's packages and started by their postinst on a real system; in the
# image they stay disabled and each role enables what it runs.
DISABLED_UNITS = ("docker-registry.service", "squid.service", "containerd.service")
MASKED_UNITS = ("systemd-binfmt.service",)
TRIMMED_DIRS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")


@dataclass(frozen=True)
class Recipe:
    suite: str
    mirror: str
    arch: str
    packages: tuple[str, ...]
    late: tuple[str, ...] = LATE_PACKAGES
    disabled: tuple[str, ...] = DISABLED_UNITS
    masked: tuple[str, ...] = MASKED_UNITS
    version: int = RECIPE_VERSION

    def digest(self) -> str:
        data = json.dumps(
            {"suite": self.suite, "mirror": self.mirror, "arch": self.arch,
             "packages": sorted(self.packages), "late": sorted(self.late),
             "disabled": sorted(self.disabled),
             "masked": sorted(self.masked), "version": self.version},
            sort_keys=True,
        )
        return hashlib.sha256(data.encode()).hexdigest()

    @property
    def alias(self) -> str:
        return f"{IMAGE_PREFIX}-{self.digest()[:12]}"


@dataclass(frozen=True)
class BuiltImage:
    recipe: Recipe
    tarball: Path
    cached: bool
    seconds: float
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def alias(self) -> str:
        return self.recipe.alias


def _host_os() -> tuple[str, str]:
    """(distribution id, codename) of this machine, to build a matching image."""
    info: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                info[k] = v.strip().strip('"')
    except OSError:
        pass
    return info.get("ID", "debian"), info.get("VERSION_CODENAME", "bookworm")


def _debian_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el",
            "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)


def _apt_mirror(distro: str) -> str:
    """The mirror this machine's apt uses (deb.debian.org by default)."""
    default = ("http://archive.ubuntu.com/ubuntu" if distro == "ubuntu"
               else "http://deb.debian.org/debian")
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for src in sources:
        try:
            text = src.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                uri = line.split(":", 1)[1].strip().split()[0]
            elif line.startswith("deb ") and "[" not in line.split()[1]:
                uri = line.split()[1]
            else:
                continue
            if uri.rstrip("/").endswith(("/debian", "/ubuntu")):
                return uri.rstrip("/")
    return default


# Debian 13 for the lab, whatever the host runs: its snapd (2.68) has per-snap
# `snap refresh --hold`, and its containerd (1.7) honours the CRI's pinned-image label
# (FACTS). Debian 12's snapd can only hold every snap until a date.
LAB_SUITE_ENV = "K8S_AIRGAP_LAB_SUITE"
DEBIAN_LAB_SUITE = "trixie"


def default_recipe() -> Recipe:
    distro, codename = _host_os()
    if distro == "debian":
        codename = os.environ.get(LAB_SUITE_ENV) or DEBIAN_LAB_SUITE
    packages: set[str] = set()
    for pkgs in ROLE_PACKAGES.values():
        packages.update(pkgs)
    return Recipe(suite=codename, mirror=_apt_mirror(distro), arch=_debian_arch(),
                  packages=tuple(sorted(packages)))


def cache_dir() -> Path:
    env = os.environ.get("K8S_AIRGAP_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/k8s-airgap")
    return Path.home() / ".cache" / "k8s-airgap"


def tarball_path(recipe: Recipe, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"{recipe.alias}.tar"


def metadata_yaml(recipe: Recipe, created: int) -> str:
    kernel_arch = {"amd64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le"}
    arch = kernel_arch.get(recipe.arch, recipe.arch)
    meta = {
        "architecture": arch,
        "creation_date": created,
        "properties": {
            "os": "debian",
            "release": recipe.suite,
            "description": f"k8s-airgap lab base ({recipe.suite}, recipe {recipe.digest()[:12]})",
            "k8s-airgap.recipe": recipe.digest(),
        },
        "templates": {
            "/etc/hostname": {"when": ["create", "copy"], "template": "hostname.tpl"},
            "/etc/hosts": {"when": ["create", "copy"], "template": "hosts.tpl"},
        },
    }
    return yaml.safe_dump(meta, sort_keys=False)


HOSTNAME_TPL = "{{ container.name }}\n"
HOSTS_TPL = (
    "127.0.0.1 localhost\n"
    "127.0.1.1 {{ container.name }}\n"
    "::1 localhost ip6-localhost ip6-loopback\n"
)

_DHCP = [("Network", [("DHCP", "ipv4"), ("LinkLocalAddressing", "no"), ("IPv6AcceptRA", "no")])]
NETWORKD_ETH0 = unit_file([("Match", [("Name", "eth0")]), *_DHCP,
                           ("DHCPv4", [("ClientIdentifier", "mac")])])

# Secondary NICs: addresses only, so that an instance has exactly one default route.
NETWORKD_SECONDARY = unit_file([
    ("Match", [("Name", "eth[1-9]*")]), *_DHCP,
    ("DHCPv4", [("ClientIdentifier", "mac"), ("UseGateway", "no"), ("UseRoutes", "no"),
                ("UseDNS", "no")]),
])


def _chroot(root: Path, argv: list[str], timeout: float = 900) -> None:
    process.run(
        ["chroot", str(root), *argv],
        env={"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"},
        timeout=timeout,
    )


def _customise(root: Path, recipe: Recipe) -> None:
    """Make the debootstrapped tree a good LXD container image (FACTS)."""
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    netd = root / "etc/systemd/network"
    netd.mkdir(parents=True, exist_ok=True)
    (netd / "10-eth0.network").write_text(NETWORKD_ETH0)
    (netd / "20-secondary.network").write_text(NETWORKD_SECONDARY)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.exists():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    for unit in recipe.disabled:
        for target in ("multi-user.target.wants",):
            p = root / "etc/systemd/system" / target / unit
            if p.is_symlink() or p.exists():
                p.unlink()
    for unit in recipe.masked:
        p = root / "etc/systemd/system" / unit
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to("/dev/null")
    # Nothing in the lab may reach a package mirror; an empty sources list says so.
    (root / "etc/apt/sources.list").write_text("")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")
    # Documentation and translations: ~60 MB that every instance would unpack.
    for docs in TRIMMED_DIRS:
        d = root / docs
        if d.is_dir():
            shutil.rmtree(d)
            d.mkdir()
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = root / cache
        if d.is_dir():
            for f in d.iterdir():
                if f.is_file():
                    f.unlink()


def _install_late(root: Path, packages: Sequence[str]) -> None:
    """apt-get install in the finished chroot, with /proc mounted (snapd's postinst)."""
    proc = root / "proc"
    proc.mkdir(exist_ok=True)
    process.run(["mount", "-t", "proc", "proc", str(proc)])
    try:
        _chroot(root, ["apt-get", "update", "-qq"])
        _chroot(root, ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages])
    finally:
        process.run(["umount", "-l", str(proc)], check=False)


def _debootstrap(root: Path, recipe: Recipe) -> None:
    policy = root / "usr/sbin/policy-rc.d"
    process.run(
        ["debootstrap", "--variant=minbase", f"--arch={recipe.arch}",
         f"--include={','.join(recipe.packages)}", recipe.suite, str(root), recipe.mirror],
        timeout=1800,
        resolution=(f"debootstrap needs the Debian mirror {recipe.mirror} (a package "
                    "registry) and root; check `apt-get update` works on this machine."),
    )
    # debootstrap has already run the postinsts; policy-rc.d guards any later apt run.
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        if recipe.late:
            _install_late(root, recipe.late)
        _customise(root, recipe)
    finally:
        policy.unlink(missing_ok=True)


def _write_tarball(root: Path, recipe: Recipe, dest: Path) -> None:
    created = int(time.time())
    tmp = dest.with_name(f".{dest.name}.part")
    with tarfile.open(tmp, "w") as tar:
        meta = metadata_yaml(recipe, created).encode()
        _add_bytes(tar, "metadata.yaml", meta)
        _add_bytes(tar, "templates/hostname.tpl", HOSTNAME_TPL.encode())
        _add_bytes(tar, "templates/hosts.tpl", HOSTS_TPL.encode())
    # Python's tarfile is slow for 20k files; GNU tar appends the rootfs with owners,
    # modes, devices and xattrs intact.
    process.run(
        ["tar", "--append", "--file", str(tmp), "--numeric-owner", "--xattrs",
         "--xattrs-include=*", "-C", str(root.parent), "--transform", f"s,^{root.name},rootfs,",
         root.name],
        timeout=900,
    )
    tmp.replace(dest)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def build_image(
    recipe: Recipe | None = None,
    *,
    cache: Path | None = None,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BuiltImage:
    """The base image tarball for recipe, built with debootstrap unless cached."""
    recipe = recipe or default_recipe()
    start = time.monotonic()
    dest = tarball_path(recipe, cache)
    if dest.is_file() and not rebuild:
        return BuiltImage(recipe, dest, True, time.monotonic() - start)
    if os.geteuid() != 0:
        raise AirgapError(
            "Building the lab base image needs root (debootstrap, chroot)",
            resolution="Run `invoke lab.image` as root (or with sudo).",
        )
    if shutil.which("debootstrap") is None:
        raise AirgapError(
            "debootstrap is not installed; it builds the lab's base image",
            resolution="apt-get install debootstrap",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="k8s-airgap-image-", dir=dest.parent) as tmp:
        root = Path(tmp) / "rootfs"
        if progress:
            progress(f"debootstrap {recipe.suite} from {recipe.mirror} "
                     f"({len(recipe.packages)} packages, then {len(recipe.late)} with apt)")
        _debootstrap(root, recipe)
        if progress:
            progress(f"writing {dest}")
        _write_tarball(root, recipe, dest)
    for stale in dest.parent.glob(f"{IMAGE_PREFIX}-*.tar"):
        if stale != dest:  # an older recipe's image: nothing uses it any more
            stale.unlink(missing_ok=True)
    return BuiltImage(recipe, dest, False, time.monotonic() - start)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    built = build_image(progress=lambda m: print(m, flush=True))
    print(f"{built.alias} {built.tarball} cached={built.cached} {built.seconds:.1f}s")


if __name__ == "__main__":
    main()
