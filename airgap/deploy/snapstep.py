"""The snap step against a real snapd: what is installed, what to do about k8s, ack or
--dangerous, and holding automatic refreshes.

Every decision starts from `snap list NAME` on the node. snapd and the base: any
installed revision will do (installing the bundle's could downgrade the host). k8s:

- store revisions (numbers) are compared as numbers: equal is kept, an older bundle is
  refused, a newer one refreshes the node (installing a local file over an installed
  snap is a refresh);
- an x-revision (a ``--dangerous`` install: the lab's stand-in, or a site that did not
  ack) carries no number to compare, so the node's installed file is compared with the
  bundle's by SHA3-384 (the digest the snap-revision assertion names), then by version.

``snap ack`` runs for real. An assertion snapd does not trust (signed by a key that does
not chain to Canonical's root, as the lab's are) fails the step unless ``--dangerous``
was given, the one lab switch, which installs that snap with ``--dangerous`` and says
so in every report.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from airgap.deploy.contents import BundleSnap
from airgap.errors import AirgapError
from airgap.nodes import Node

SNAPS_DIR = "/var/lib/snapd/snaps"
# snapd before 2.58 (Debian 12's 2.57) holds all snaps until a date, at most 90 days out.
HOLD_DAYS = 89
HOLD_RENEW_DAYS = 30  # a refresh.hold ending sooner than this is renewed by deploy
NOT_TRUSTED = "not trusted by snapd, installed with --dangerous"
_UNTRUSTED = ("cannot resolve prerequisite assertion", "cannot find signing key",
              "no matching public key")


@dataclass(frozen=True)
class SnapRow:
    """One row of `snap list`: Name Version Rev Tracking Publisher Notes."""

    name: str
    version: str
    rev: str
    tracking: str = "-"
    publisher: str = "-"
    notes: tuple[str, ...] = ()

    @property
    def local(self) -> bool:
        """An x-revision: installed from a file with --dangerous."""
        return self.rev.startswith("x")

    @property
    def held(self) -> bool:
        return "held" in self.notes

    @property
    def classic(self) -> bool:
        return "classic" in self.notes


def parse_snap_list(stdout: str) -> dict[str, SnapRow]:
    """`snap list` output by name. Notes is a comma list ("classic,held"), "-" for none."""
    rows: dict[str, SnapRow] = {}
    for line in stdout.splitlines():
        cols = line.split()
        if len(cols) < 3 or cols[0] == "Name":
            continue
        notes = cols[5] if len(cols) > 5 else "-"
        rows[cols[0]] = SnapRow(
            cols[0], cols[1], cols[2],
            cols[3] if len(cols) > 3 else "-", cols[4] if len(cols) > 4 else "-",
            tuple(n for n in notes.split(",") if n and n != "-"))
    return rows


def snap_row(node: Node, name: str) -> SnapRow | None:
    """The node's installed NAME, or None (`snap list NAME` fails when it is absent)."""
    res = node.run(["snap", "list", name], check=False)
    return parse_snap_list(res.stdout).get(name) if res.ok else None


SHA3_SCRIPT = 'openssl dgst -sha3-384 -binary "$1" | base64 -w0'


def installed_sha3(node: Node, row: SnapRow) -> str:
    """SHA3-384 of the node's installed snap file, as assertions write it (base64url, no
    padding). Empty if the file cannot be read."""
    path = f"{SNAPS_DIR}/{row.name}_{row.rev}.snap"
    res = node.run(["sh", "-c", SHA3_SCRIPT, "sh", path], check=False)
    text = res.stdout.strip()
    if not res.ok or not text:
        return ""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return ""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") if len(raw) == 48 else ""


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Order snap versions (v1.32.2, 1.36.0, 1.36.1-rc.1) by their numeric parts first."""
    parts = re.findall(r"\d+|[A-Za-z]+", re.sub(r"^[vV](?=\d)", "", version))
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in parts)


@dataclass(frozen=True)
class Decision:
    action: str  # "keep", "install" or "refresh"
    detail: str


def _downgrade(node: str, have: str, want: str) -> AirgapError:
    return AirgapError(
        f"{node}: the node runs k8s {have}, newer than the bundle's {want}; refusing to "
        "downgrade",
        resolution="Prepare a bundle from the channel the node runs (`invoke prepare`), or, "
        "to downgrade on purpose, remove k8s from the node first (`snap remove k8s`, which "
        "removes its cluster state) and deploy again.",
    )


def k8s_decision(node: str, row: SnapRow | None, snap: BundleSnap,
                 node_sha3: Callable[[], str], bundle_version: Callable[[], str]) -> Decision:
    """Keep, install or refresh the node's k8s for the bundle's; refuse a downgrade."""
    want = snap.revision
    if row is None:
        return Decision("install", f"k8s={want or '?'}")
    if not row.local and want and row.rev.isdigit() and want.isdigit():
        if int(row.rev) == int(want):
            return Decision("keep", f"k8s={row.rev}")
        if int(row.rev) > int(want):
            raise _downgrade(node, f"revision {row.rev}", f"revision {want}")
        return Decision("refresh", f"k8s revision {row.rev} -> {want}")
    # An x-revision has no number to compare: the file itself, then its version.
    have_sha = node_sha3()
    if have_sha and snap.sha3_384 and have_sha == snap.sha3_384:
        return Decision("keep", f"k8s={row.rev} {row.version} (the bundle's file: same "
                        "SHA3-384; an x-revision is compared by SHA3-384, not by number)")
    version = bundle_version()
    have, new = version_key(row.version), version_key(version)
    if new > have:
        return Decision("refresh", f"k8s {row.version} ({row.rev}) -> {version}, by version "
                        "(the node's x-revision is compared by version and SHA3-384)")
    if new < have:
        raise _downgrade(node, f"{row.version} ({row.rev})", version)
    raise AirgapError(
        f"{node}: the node runs k8s {row.version} ({row.rev}), the bundle's version, but "
        "not the bundle's file (SHA3-384 differs); cannot tell which is newer",
        resolution="Deploy the bundle the node was installed from, or remove k8s from the "
        "node (`snap remove k8s`, which removes its cluster state) and deploy again.",
    )


def ack(node: str, run: Callable[[list[str]], tuple[bool, str]], assertion: str,
        snap: str, dangerous: bool) -> bool:
    """`snap ack` the assertion; True if snapd took it. An untrusted one is False with
    ``dangerous`` (the snap then installs with --dangerous) and an error without."""
    ok, err = run(["snap", "ack", assertion])
    if ok:
        return True
    last = (err.strip().splitlines() or ["snap ack failed"])[-1]
    untrusted = any(m in err for m in _UNTRUSTED)
    if untrusted and dangerous:
        return False
    if untrusted:
        raise AirgapError(
            f"{node}: snapd does not trust {assertion} ({snap}): {last}",
            resolution="The bundle's assertions must chain to Canonical's root key: prepare "
            "it with `invoke prepare` from the Snap Store (snap download). `--dangerous` "
            "installs snaps snapd cannot verify and exists for the lab's stand-in snaps only.",
        )
    raise AirgapError(f"{node}: snap ack {assertion} failed: {last}",
                      resolution="Check the file on the node against the bundle "
                      "(`invoke verify`) and run deploy again.")


def hold_until(now: int) -> str:
    return (datetime.fromtimestamp(now, timezone.utc) + timedelta(days=HOLD_DAYS)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_hold(text: str) -> datetime | None:
    """snapd's refresh.hold value: an RFC 3339 time, or "forever"."""
    text = text.strip()
    if text == "forever":
        return datetime.max.replace(tzinfo=timezone.utc)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def node_now(node: Node) -> int:
    res = node.run(["date", "+%s"])
    return int(res.stdout.strip())


def hold_state(node: Node, renew_within: int = 0) -> tuple[bool, str]:
    """Whether automatic refreshes of k8s are held, and how. A refresh.hold that ends
    within ``renew_within`` days counts as not held (deploy renews it)."""
    row = snap_row(node, "k8s")
    if row is not None and row.held:
        return True, f"k8s held (snap list notes: {','.join(row.notes)})"
    res = node.run(["snap", "get", "system", "refresh.hold"], check=False)
    until = parse_hold(res.stdout) if res.ok else None
    if until is not None:
        left = until.timestamp() - node_now(node)
        if left > renew_within * 86400:
            return True, f"all snaps held until {res.stdout.strip()} (refresh.hold)"
        if left > 0:
            return False, f"refresh.hold ends {res.stdout.strip()}, within {renew_within} days"
    return False, "automatic refreshes are not held"


def hold_refreshes(node: Node, name: str) -> str:
    """Hold k8s's automatic refreshes: per snap and forever where snapd has --hold
    (2.58 and later), else every snap until a date (refresh.hold). What was done."""
    res = node.run(["snap", "refresh", "--hold=forever", "k8s"], check=False)
    if res.ok:
        return "snap refresh --hold=forever k8s"
    if "unknown flag" not in res.stderr:
        raise AirgapError(f"{name}: snap refresh --hold=forever k8s failed: "
                          f"{(res.stderr.strip().splitlines() or ['?'])[-1]}",
                          resolution="Check snapd on the node (`snap version`) and run "
                          "deploy again.")
    until = hold_until(node_now(node))
    node.run(["snap", "set", "system", f"refresh.hold={until}"])
    return (f"snap set system refresh.hold={until} (this snapd has no --hold: every snap "
            f"held until then; deploy renews it)")
