"""The full air gap on screen: prepare with the image store and a signature, verify with
its signer, pack and unpack for media, and the mirror filled from the bundle. Each
function is a task's body (tasks.py parses the flags); every table a task on the
air-gapped side prints says loudly when the bundle was accepted unsigned.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from airgap.bundle import (
    NO_CHECK_WARNING,
    Bundle,
    BundleError,
    VerifyReport,
    load_trust,
    verify_bundle,
)
from airgap.bundle.pack import PackReport
from airgap.bundle.signing import SignatureCheck, check_signature, sign_manifest
from airgap.bundle.verify import SignerPolicy
from airgap.plan import Plan
from airgap.show import human_bytes
from airgap.show.bundle import prepare_tables, verify_table

FROM_STORE = "pushed from the bundle's image store, no upstream asked"
UNSIGNED = ("WARNING: --allow-unsigned: this bundle carries no signature; nothing proves "
            "who made it or that it was not changed on the way.")


def policy(allowed_signers: str | None, allow_unsigned: bool) -> SignerPolicy:
    return SignerPolicy(Path(allowed_signers) if allowed_signers else None, allow_unsigned)


def signature_gate(err: Console, bundle: Path, signers: SignerPolicy) -> SignatureCheck:
    """The bundle's signature checked before a task uses it (raises when refused)."""
    sig = check_signature(bundle, signers.allowed_signers, allow_unsigned=signers.allow_unsigned)
    say_signature(err, sig)
    return sig


def say_signature(err: Console, sig: SignatureCheck | None) -> None:
    if sig is None:
        return
    if sig.signed:
        err.print(f"bundle signature: {sig.detail}")
    else:
        err.print(f"[bold red]{UNSIGNED}[/]")


def run_prepare(err: Console, plan: Plan, bundle: Path, *, from_dir: Path | None,
                trusted_root: Path | None, check: bool, refresh_images: bool, images: bool,
                sign_key: Path | None, since: Path | None = None) -> None:
    from airgap.bundle import prepare_bundle

    out = Console()
    trust = load_trust(trusted_root, check)
    with err.status("preparing") as status:
        rep = prepare_bundle(plan, bundle, from_dir=from_dir, trust=trust,
                             refresh_images=refresh_images, images=images,
                             progress=lambda msg: status.update(msg), since=since)
    for table in prepare_tables(rep):
        out.print(table)
    if rep.store is not None:
        s = rep.store
        out.print(f"image store: {s.images} images, {s.blobs} blobs, "
                  f"{human_bytes(s.blob_bytes)} (fetched {human_bytes(s.fetched_bytes)}, "
                  f"kept {s.kept} blobs) in {s.seconds:.1f} s")
    out.print(f"manifest written: {rep.manifest}")
    if rep.delta is not None:
        out.print(f"delta against {since}: {rep.delta.summary()}")
    if sign_key is not None:
        sig = sign_manifest(bundle, sign_key)
        out.print(f"signature written: {sig} (ssh-keygen -Y sign, namespace k8s-airgap)")
    else:
        err.print("[bold yellow]not signed: the air-gapped side refuses it unless given "
                  "--allow-unsigned (sign with --sign-key KEY)[/]")
    if not rep.signature_check:
        err.print(f"[bold red]{NO_CHECK_WARNING}[/]")


def run_verify(err: Console, bundle: Path, *, trusted_root: Path | None, check: bool,
               signers: SignerPolicy, base: Path | None = None) -> None:
    out = Console()

    def show(rep: VerifyReport) -> None:
        out.print(verify_table(rep))
        if not rep.sideload_checked:
            out.print("side-load archives: none in images/ (nothing to validate)")
        say_signature(err, rep.signature)

    try:
        with err.status("verifying") as status:
            rep = verify_bundle(bundle, trusted_root, check,
                                progress=lambda msg: status.update(msg), signers=signers,
                                base=base)
    except BundleError as exc:
        show(exc.report)
        raise
    show(rep)
    out.print("[green]bundle verified[/]" + ("" if check else " (signatures NOT checked)")
              + (f" (a delta: with its base {base})" if base else ""))


def run_mirror_from_bundle(err: Console, plan: Plan, bundle: Path, signers: SignerPolicy,
                           parallel: int) -> None:
    from airgap.mirror import MirrorError
    from airgap.mirror.from_bundle import push_bundle
    from airgap.plan.lock import read_lock
    from airgap.show.mirror import report_table, summary_line

    out = Console()
    rep = verify_bundle(bundle, check_signatures=False, signers=signers)  # files + store
    say_signature(err, rep.signature)
    lock = read_lock(Bundle(bundle).lock)
    try:
        with err.status("mirror --from-bundle") as status:
            report = push_bundle(plan, bundle, lock, parallel=parallel,
                                 progress=lambda msg: status.update(msg))
    except MirrorError as exc:
        out.print(report_table(exc.report))
        err.print(summary_line(exc.report, FROM_STORE))
        raise
    out.print(report_table(report))
    err.print(summary_line(report, FROM_STORE), soft_wrap=True)


def pack_table(rep: PackReport) -> Table:
    t = Table(title=f"Packed into {rep.out}")
    for col in ("part", "size", "sha256"):
        t.add_column(col)
    for p in rep.parts:
        t.add_row(p.name, human_bytes(p.size), p.sha256[:16] + "...")
    return t


def run_pack(err: Console, bundle: Path, out_dir: Path, part_size: str, compress: str) -> None:
    from airgap.bundle.pack import pack, parse_size

    size = parse_size(part_size)
    rep = pack(bundle, out_dir, size, progress=lambda m: err.print(m), compress=compress)
    Console().print(pack_table(rep))
    err.print(f"{len(rep.parts)} part(s), {human_bytes(rep.bytes_out)} on media for "
              f"{human_bytes(rep.bytes_in)} of bundle (ratio {rep.ratio:.3f}), "
              f"{rep.seconds:.1f} s ({human_bytes(int(rep.rate))}/s)")


def run_unpack(err: Console, parts: Path, dest: Path, consume: bool, *,
               trusted_root: Path | None, check: bool, signers: SignerPolicy,
               base: Path | None = None) -> None:
    from airgap.bundle.unpack import unpack

    rep = unpack(parts, dest, consume=consume, progress=lambda m: err.print(m), base=base)
    if base is not None:
        err.print(f"a delta: merged with its base {base} into the full bundle {dest}")
    err.print(f"unpacked {len(rep.files)} file(s), {human_bytes(rep.bytes_out)}, into {dest} "
              f"in {rep.seconds:.1f} s (checking the parts: {rep.check_seconds:.1f} s)"
              + (f"; {len(rep.consumed)} part(s) consumed" if rep.consumed else ""),
              soft_wrap=True)
    run_verify(err, dest, trusted_root=trusted_root, check=check, signers=signers)
