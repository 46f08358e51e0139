"""invoke tasks: thin wrappers that parse flags, call airgap/ and lab/, print results.

All logic lives in the library; a task loads the plan, calls one function and turns
an AirgapError into a clean message and a non-zero exit (never a traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Collection, Context, Exit, task  # type: ignore[attr-defined]
from rich.console import Console

from airgap.bundle import NO_CHECK_WARNING
from airgap.cli import SIGNER_HELP, TRUST_HELP, configure_logging, trust_flags, user_errors
from lab.lxd import TRANSPORTS as LAB_TRANSPORTS  # transport: lxd, for the lab's nodes

if TYPE_CHECKING:
    from airgap.show.day2 import RolloutArgs

console = Console(stderr=True)

def _trust_flags(trusted_root: str | None, no_signature_check: bool) -> tuple[Path | None, bool]:
    root, check = trust_flags(trusted_root, no_signature_check)
    if not check:
        console.print(f"[bold red]{NO_CHECK_WARNING}[/]")
    return root, check


@task(help={"debug": "Log every command run (secrets are never logged)."})
def version(c: Context, debug: bool = False) -> None:
    """Print the k8s-airgap version and the tools it finds."""
    configure_logging(debug)
    from airgap import __version__
    from airgap.tools import check_tools

    print(f"k8s-airgap {__version__}")
    with user_errors():
        for status in check_tools():
            print(status.describe())


@task(
    help={
        "plan": "The plan (airgap.yaml) to render.",
        "out": "Directory to write into; created, or replaced if a previous render.",
        "images": "k8s image list (`k8s list-images` output or the snap's images.txt).",
        "bundle": "A prepared bundle directory; its images.lock gives the image list.",
        "debug": "Log every command run (secrets are never logged).",
    }
)
def render(c: Context, plan: str | None = None, out: str | None = None,
           images: str | None = None, bundle: str | None = None, debug: bool = False) -> None:
    """Write every file the plan puts on each node (and the connected side) into a folder."""
    configure_logging(debug)
    from rich.console import Console as _Console

    from airgap.plan import load_plan, mirror_ca_pem
    from airgap.plan.sources import plan_images
    from airgap.render.write import write_render
    from airgap.show.render import render_tree

    if not plan or not out:
        raise Exit("Error: --plan FILE and --out DIR are required (see `invoke render --help`)",
                   code=1)
    with user_errors():
        p = load_plan(plan)
        refs = plan_images(p, images_file=Path(images) if images else None,
                           bundle=Path(bundle) if bundle else None)
        result = write_render(p, refs, mirror_ca_pem(p), Path(out))
    _Console().print(render_tree(result, len(refs)))


@task(
    help={
        "out": "Where to write the starter plan (default airgap.yaml).",
        "mode": "Image access mode: mirror, proxy or sideload (default mirror).",
        "force": "Overwrite the file if it exists.",
    }
)
def init(c: Context, out: str = "airgap.yaml", mode: str = "mirror",
         force: bool = False) -> None:
    """Write a commented starter plan (airgap.yaml) to edit."""
    from airgap.fileio import write_atomic
    from airgap.plan import Mode, starter_plan

    try:
        chosen = Mode(mode)
    except ValueError:
        raise Exit(f"Error: --mode {mode!r}: choose mirror, proxy or sideload", code=1) from None
    target = Path(out)
    if target.exists() and not force:
        raise Exit(f"Error: {target} already exists; pass --force to overwrite it", code=1)
    write_atomic(target, starter_plan(chosen, target.name))
    print(f"Wrote {target} ({chosen.value} mode). Edit it, then: "
          f"invoke render --plan {target} --out rendered")


@task(
    help={
        "force": "Reinstall even if the pinned versions are already there.",
        "check": "Only report where regsync/regctl are and their versions; install nothing.",
        "debug": "Log every command run (secrets are never logged).",
    }
)
def tools(c: Context, force: bool = False, check: bool = False, debug: bool = False) -> None:
    """Install the pinned regsync and regctl (go install) into .bin/ and check their versions."""
    configure_logging(debug)
    from airgap import tools as _tools
    from airgap.show.mirror import tools_table

    with user_errors():
        status = _tools.check_tools() if check else _tools.install_tools(force=force)
    Console().print(tools_table(status, _tools.REGCLIENT_VERSION))
    if not all(s.ok for s in status):
        raise Exit("Error: regsync/regctl missing or not at the pinned version; "
                   "run `invoke tools` to install them", code=1)


@task(
    iterable=["insecure_upstream"],
    help={
        "plan": "The plan (airgap.yaml); its mirror: section names the registry.",
        "bundle": "A prepared bundle: its images.lock gives the images and their digests.",
        "lock": "An images.lock to verify digests against (default: BUNDLE/images.lock).",
        "images": "k8s image list instead of the bundle/default list (list-images output).",
        "config": "Also write the full sync-images.yaml here (to read or run by hand).",
        "insecure_upstream": "HOST:PORT of an upstream served over plain http (repeatable).",
        "upstream_ca": "PEM CA file trusted for upstream registries (lab upstream).",
        "parallel": "Images regsync copies at once (default 6); blobs pushed at once with "
        "--from-bundle.",
        "from_bundle": "Air-gapped side: fill the mirror from this bundle's image store (no "
        "upstream asked; signature and every blob checked first).",
        **SIGNER_HELP,
        "debug": "Log every command run (secrets are never logged).",
    },
)
def mirror(c: Context, plan: str | None = None, bundle: str | None = None,
           lock: str | None = None, images: str | None = None, config: str | None = None,
           insecure_upstream: list[str] | None = None, upstream_ca: str | None = None,
           parallel: int = 6, from_bundle: str | None = None,
           allowed_signers: str | None = None, allow_unsigned: bool = False,
           debug: bool = False) -> None:
    """Copy every image into the private mirror (regsync, or --from-bundle), verify each."""
    configure_logging(debug)
    if from_bundle and plan:
        from airgap.plan import load_plan
        from airgap.show.gap import policy, run_mirror_from_bundle

        with user_errors():
            run_mirror_from_bundle(console, load_plan(plan), Path(from_bundle),
                                   policy(allowed_signers, allow_unsigned), int(parallel))
        return
    from airgap.show.mirror import run_mirror

    if not plan:
        raise Exit("Error: --plan FILE is required (see `invoke mirror --help`)", code=1)
    with user_errors():
        run_mirror(console, Path(plan), bundle=Path(bundle) if bundle else None,
                   lock=Path(lock) if lock else None, images=Path(images) if images else None,
                   config=Path(config) if config else None, insecure=insecure_upstream or [],
                   upstream_ca=Path(upstream_ca) if upstream_ca else None,
                   parallel=int(parallel))


@task(
    help={
        "plan": "The plan (airgap.yaml): nodes, platforms, workload images.",
        "out": "Directory for the *.tar archives (default: BUNDLE/images).",
        "bundle": "A prepared bundle: its images.lock gives the images and digests.",
        "lock": "An images.lock to export exactly (default: BUNDLE/images.lock).",
        "images": "k8s image list instead of the bundle/default list (list-images output).",
        "platform": "The nodes' platform, e.g. linux/arm64 (default: the plan's platform).",
        "source": "Export from this registry instead of upstream: http(s)://HOST:PORT[/prefix].",
        "single_archive": "Write one OCI archive holding every image (shared blobs once).",
        "export": "Export archives (--no-export: only validate/deliver what is in --out).",
        "deliver": "Copy the archives to every node, restart the runtime, confirm digests.",
        "node": "Deliver only to this node (repeatable; default: every node of the plan).",
        "timeout": "Seconds to wait on each node for the images to appear (default 120).",
        "from_store": "Build one archive from the bundle's image store (air-gapped side: no "
        "registry needed; needs --bundle).",
        **SIGNER_HELP,
        "debug": "Log every command run (secrets are never logged).",
    },
    iterable=["node"],
)
def sideload(c: Context, plan: str | None = None, out: str | None = None,
             bundle: str | None = None, lock: str | None = None, images: str | None = None,
             platform: str | None = None, source: str | None = None,
             node: list[str] | None = None, timeout: int = 120, debug: bool = False,
             deliver: bool = False, export: bool = True, single_archive: bool = False,
             from_store: bool = False, allowed_signers: str | None = None,
             allow_unsigned: bool = False) -> None:
    """Export named, validated image archives for side-loading; optionally deliver them."""
    configure_logging(debug)
    from airgap.show.gap import policy
    from airgap.show.sideload import SideloadArgs, run_sideload

    if not plan:
        raise Exit("Error: --plan FILE is required (see `invoke sideload --help`)", code=1)
    if not out and not bundle:
        raise Exit("Error: --out DIR (or --bundle DIR) is required", code=1)
    with user_errors():
        run_sideload(console, SideloadArgs(
            plan=Path(plan), out=Path(out) if out else None,
            bundle=Path(bundle) if bundle else None, lock=Path(lock) if lock else None,
            images=Path(images) if images else None, platform=platform, source=source,
            nodes=node or [], timeout=float(timeout), deliver=deliver, export=export,
            single_archive=single_archive, from_store=from_store,
            signers=policy(allowed_signers, allow_unsigned)), LAB_TRANSPORTS)


@task(
    help={
        "plan": "The plan (airgap.yaml) naming the nodes and the image access mode(s).",
        "bundle": "A prepared bundle (optional): its images.lock names the registries the "
        "proxy must reach, its size sets the free disk needed.",
        "node": "Check only this node (repeatable); default: every node in the plan.",
        **SIGNER_HELP,
        "debug": "Log every command run (secrets are never logged).",
    },
    iterable=["node"],
)
def preflight(c: Context, plan: str | None = None, bundle: str | None = None,
              node: list[str] | None = None, allowed_signers: str | None = None,
              allow_unsigned: bool = False, debug: bool = False) -> None:
    """Check every node before install: route, ports, proxy/mirror, disk, snapd, clock."""
    configure_logging(debug)
    from airgap.show.gap import policy
    from airgap.show.preflight import run_preflight_task

    if not plan:
        raise Exit("Error: --plan FILE is required (see `invoke preflight --help`)", code=1)
    with user_errors():
        run_preflight_task(console, Path(plan), Path(bundle) if bundle else None, node or [],
                           policy(allowed_signers, allow_unsigned), LAB_TRANSPORTS)


ROLLOUT_HELP = {
    "plan": "The plan (airgap.yaml) naming the nodes and the image access mode(s).",
    "bundle": "The bundle written by `invoke prepare --bundle DIR` (verified first).",
    "timeout": "Seconds to wait for each node to be Ready (default 900).",
    **TRUST_HELP,
    **SIGNER_HELP,
    "dangerous": "Lab only: install snaps whose assertions snapd does not trust with "
    "--dangerous (named in the report). Never for Canonical's snaps.",
    "debug": "Log every command run (secrets are never logged).",
}


def _rollout(plan: str | None, bundle: str | None, node: list[str] | None, timeout: int,
             trusted_root: str | None, no_signature_check: bool, dangerous: bool,
             allowed_signers: str | None, allow_unsigned: bool, what: str) -> RolloutArgs:
    from airgap.show.day2 import RolloutArgs
    from airgap.show.gap import policy

    if not plan or not bundle:
        raise Exit(f"Error: --plan FILE and --bundle DIR are required (see `invoke {what} "
                   "--help`)", code=1)
    root, check = _trust_flags(trusted_root, no_signature_check)
    return RolloutArgs(Path(plan), Path(bundle), node or [], root, check,
                       policy(allowed_signers, allow_unsigned), dangerous, float(timeout))


@task(help={**ROLLOUT_HELP, "node": "Deploy only this node (repeatable): a node added later "
            "joins the running cluster, at the cluster's k8s revision only."},
      iterable=["node"])
def deploy(c: Context, plan: str | None = None, bundle: str | None = None,
           node: list[str] | None = None, timeout: int = 900, trusted_root: str | None = None,
           no_signature_check: bool = False, dangerous: bool = False,
           allowed_signers: str | None = None, allow_unsigned: bool = False,
           debug: bool = False) -> None:
    """Install k8s from the bundle, configure the runtime, bootstrap, join, wait for Ready."""
    configure_logging(debug)
    from airgap.show.day2 import run_deploy

    a = _rollout(plan, bundle, node, timeout, trusted_root, no_signature_check, dangerous,
                 allowed_signers, allow_unsigned, "deploy")
    with user_errors():
        run_deploy(console, a, LAB_TRANSPORTS)


@task(help={**ROLLOUT_HELP, "node": "Upgrade only this node (repeatable; default: all).",
            "batch": "Workers refreshed at once, after the control planes (default 1)."},
      iterable=["node"])
def upgrade(c: Context, plan: str | None = None, bundle: str | None = None,
            node: list[str] | None = None, batch: int = 1, timeout: int = 900,
            trusted_root: str | None = None, no_signature_check: bool = False,
            dangerous: bool = False, allowed_signers: str | None = None,
            allow_unsigned: bool = False, debug: bool = False) -> None:
    """Rolling k8s refresh from a bundle: images first, then one node at a time."""
    configure_logging(debug)
    from airgap.show.day2 import run_upgrade

    a = _rollout(plan, bundle, node, timeout, trusted_root, no_signature_check, dangerous,
                 allowed_signers, allow_unsigned, "upgrade")
    with user_errors():
        run_upgrade(console, a, int(batch), LAB_TRANSPORTS)


@task(help={"plan": "The plan (airgap.yaml); its history is PLAN's directory/STEM.site/.",
            "live": "Also ask each node what it runs now (--no-live: the record only).",
            "debug": "Log every command run (secrets are never logged)."})
def status(c: Context, plan: str | None = None, live: bool = True,
           debug: bool = False) -> None:
    """Which bundle each node runs (the site's history), and its k8s now."""
    configure_logging(debug)
    from airgap.show.day2 import run_status

    if not plan:
        raise Exit("Error: --plan FILE is required (see `invoke status --help`)", code=1)
    with user_errors():
        run_status(console, Path(plan), LAB_TRANSPORTS, live=live)


@task(
    help={
        "plan": "The plan (airgap.yaml): k8s channel, workload images, target platforms.",
        "bundle": "The bundle directory to write (re-runs keep files that still verify).",
        "from": "Build from snaps and .assert files downloaded elsewhere (no Snap Store needed).",
        **TRUST_HELP,
        "refresh_images": "Resolve image digests again even when images.lock is current.",
        "images": "Store every image of images.lock in the bundle (DIR/oci; --no-images: "
        "only the lock, for sites whose mirror is filled from a connected machine).",
        "sign_key": "Sign manifest.json with this SSH key (ssh-keygen -Y sign; a .pub whose "
        "private half is in ssh-agent works too).",
        "since": "A delta: the manifest.json of the last bundle the site received (`invoke "
        "status` names its copy); only what the site lacks is written.",
        "debug": "Log every command run.",
    }
)
def prepare(c: Context, plan: str | None = None, bundle: str | None = None,
            from_: str | None = None, trusted_root: str | None = None,
            no_signature_check: bool = False, refresh_images: bool = False,
            images: bool = True, sign_key: str | None = None, since: str | None = None,
            debug: bool = False) -> None:
    """Build the bundle that crosses the gap: snaps + assertions, images, manifest, signature."""
    configure_logging(debug)
    from airgap.plan import load_plan
    from airgap.show.gap import run_prepare

    if not plan or not bundle:
        raise Exit("Error: --plan FILE and --bundle DIR are required (see `invoke prepare --help`)",
                   code=1)
    with user_errors():
        root, check = trust_flags(trusted_root, no_signature_check)
        run_prepare(console, load_plan(plan), Path(bundle), from_dir=Path(from_) if from_ else None,
                    trusted_root=root, check=check, refresh_images=refresh_images, images=images,
                    sign_key=Path(sign_key) if sign_key else None,
                    since=Path(since) if since else None)


@task(
    help={
        "bundle": "The bundle directory (as copied across the gap).",
        "base": "For a delta bundle: the bundle the site last received (its base).",
        **TRUST_HELP,
        **SIGNER_HELP,
        "debug": "Log every command run.",
    }
)
def verify(c: Context, bundle: str | None = None, trusted_root: str | None = None,
           no_signature_check: bool = False, allowed_signers: str | None = None,
           allow_unsigned: bool = False, base: str | None = None, debug: bool = False) -> None:
    """Check the bundle's signature, every file against the manifest, every snap and image."""
    configure_logging(debug)
    from airgap.show.gap import policy, run_verify

    if not bundle:
        raise Exit("Error: --bundle DIR is required (see `invoke verify --help`)", code=1)
    root, check = _trust_flags(trusted_root, no_signature_check)
    with user_errors():
        run_verify(console, Path(bundle), trusted_root=root, check=check,
                   signers=policy(allowed_signers, allow_unsigned),
                   base=Path(base) if base else None)


@task(
    help={
        "bundle": "The bundle directory to pack (prepared and signed).",
        "out": "Directory for the parts and index.json (e.g. the mounted stick).",
        "part_size": "Largest part: bytes, or with K/M/G/T (powers of 1024), or fat32 "
        "(4 GiB - 1).",
        "compress": "auto (zstd only for files whose first 8 MiB shrink by 10%), never, always.",
        "debug": "Log every command run.",
    }
)
def pack(c: Context, bundle: str | None = None, out: str | None = None,
         part_size: str = "fat32", compress: str = "auto", debug: bool = False) -> None:
    """Write the bundle as parts of at most --part-size plus an index of their sha256."""
    configure_logging(debug)
    from airgap.show.gap import run_pack

    if not bundle or not out:
        raise Exit("Error: --bundle DIR and --out DIR are required (see `invoke pack --help`)",
                   code=1)
    with user_errors():
        run_pack(console, Path(bundle), Path(out), part_size, compress)


@task(
    help={
        "parts": "The directory holding index.json and the parts (as copied from media).",
        "out": "Where to reassemble the bundle (a new or empty directory).",
        "consume": "Delete each part once it has been read (needs less free space).",
        "base": "For a delta pack: the bundle the site last received; OUT is the full bundle.",
        **TRUST_HELP,
        **SIGNER_HELP,
        "debug": "Log every command run.",
    }
)
def unpack(c: Context, parts: str | None = None, out: str | None = None, consume: bool = False,
           trusted_root: str | None = None, no_signature_check: bool = False,
           allowed_signers: str | None = None, allow_unsigned: bool = False,
           base: str | None = None, debug: bool = False) -> None:
    """Check every part, reassemble the bundle, then verify it against its signed manifest."""
    configure_logging(debug)
    from airgap.show.gap import policy, run_unpack

    if not parts or not out:
        raise Exit("Error: --parts DIR and --out DIR are required (see `invoke unpack --help`)",
                   code=1)
    root, check = _trust_flags(trusted_root, no_signature_check)
    with user_errors():
        run_unpack(console, Path(parts), Path(out), consume, trusted_root=root, check=check,
                   signers=policy(allowed_signers, allow_unsigned),
                   base=Path(base) if base else None)


ns = Collection(version)
ns.add_task(render)
ns.add_task(init)
ns.add_task(tools)
ns.add_task(mirror)

from lab import tasks as lab_tasks  # noqa: E402

ns.add_collection(lab_tasks.ns, "lab")
ns.add_task(sideload)
ns.add_task(preflight)
ns.add_task(deploy)
ns.add_task(upgrade)
ns.add_task(status)
ns.add_task(prepare)
ns.add_task(verify)
ns.add_task(pack)
ns.add_task(unpack)
