"""Pinning side-loaded images against kubelet's image garbage collection.

The k8s snap's side-load import sets no pin label (FACTS), so kubelet's image GC may
remove an imported image under disk pressure; offline, it never comes back. containerd's
CRI reports ``Image.pinned`` (runtime.v1 field 8, which kubelet's GC skips) for an image
that carries the label ``io.cri-containerd.pinned=pinned``
(containerd internal/cri/store/image: ``pinned := labels[PinnedImageLabelKey] ==
PinnedImageLabelValue``). So every side-loaded image is labelled with ctr
(``ctr -n k8s.io images label NAME io.cri-containerd.pinned=pinned``) and the label is
confirmed in ``ctr -n k8s.io images ls`` (its LABELS column) on the node; where a CRI
client is at hand (the lab exposes each node's CRI socket), ``cri_pins`` confirms that
the CRI itself reports pinned=true, which is what kubelet reads.

Which runtimes honour it (read in containerd's source, tags v1.6.x/v1.7.x/v2.x): the
label is read by the CRI from 1.6.22 and 1.7.3 ("Pinned image support", a backport);
a label added to an image the CRI already knows (ours: added after the import) is
picked up from 1.6.25 and 1.7.10 ("cri: fix update of pinned label for images");
every 2.x does both. Older runtimes keep the label but report pinned=false, and then
deploy warns that the images may be garbage-collected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from airgap.cri import Image
from airgap.errors import AirgapError
from airgap.nodes import Node
from airgap.sideload.deliver import RuntimeAccess, ctr_command

PIN_LABEL = "io.cri-containerd.pinned"
PIN_VALUE = "pinned"
PINNED = f"{PIN_LABEL}={PIN_VALUE}"
# The first releases whose CRI reports a label added after the import (see above).
HONOURED_SINCE = ((1, 6, 25), (1, 7, 10), (2, 0, 0))
NEEDED = "containerd 1.7.10 or later (1.6.25 or later on the 1.6 line; any 2.x)"


def parse_ctr_labels(text: str) -> dict[str, dict[str, str]]:
    """name -> labels from `ctr images ls` (REF TYPE DIGEST SIZE PLATFORMS LABELS).

    SIZE is printed as two words ("1.0 MiB"), PLATFORMS and LABELS are comma-joined
    without spaces, and LABELS is the last column ("-" when there are none)."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 4 or not cols[2].startswith("sha"):
            continue
        labels: dict[str, str] = {}
        if cols[-1] != "-":
            for item in cols[-1].split(","):
                key, sep, value = item.partition("=")
                if sep:
                    labels[key] = value
        out[cols[0]] = labels
    return out


@dataclass(frozen=True)
class PinRow:
    image: str
    status: str  # pinned (labelled now), already pinned, missing (not in the runtime)

    @property
    def ok(self) -> bool:
        return self.status in ("pinned", "already pinned")


def _listing(node: Node, ctr: Sequence[str]) -> dict[str, dict[str, str]]:
    res = node.run([*ctr, "-n", "k8s.io", "images", "ls"], check=False, timeout=60)
    if not res.ok:
        raise AirgapError(
            f"{node.name}: `{' '.join(ctr)} -n k8s.io images ls` failed: "
            f"{(res.stderr or res.stdout).strip()[:200]}",
            resolution="Check that containerd runs on the node "
            "(`systemctl status snap.k8s.containerd`), then run deploy again.",
        )
    return parse_ctr_labels(res.stdout)


def pin_images(node: Node, images: Sequence[str], *,
               runtime: RuntimeAccess | None = None) -> list[PinRow]:
    """Label every image that lacks the pin label, then read the labels back.

    An image not in the runtime is a row "missing" (not labelled: ctr would fail);
    a label that does not show after ``ctr images label`` raises, naming the image."""
    ctr = ctr_command(node, runtime)
    before = _listing(node, ctr)
    todo = [i for i in images if i in before and before[i].get(PIN_LABEL) != PIN_VALUE]
    for image in todo:
        res = node.run([*ctr, "-n", "k8s.io", "images", "label", image, PINNED],
                       check=False, timeout=60)
        if not res.ok:
            raise AirgapError(
                f"{node.name}: could not pin {image}: {(res.stderr or res.stdout).strip()[:200]}",
                resolution=f"On {node.name}: `{' '.join(ctr)} -n k8s.io images label {image} "
                f"{PINNED}`, and see containerd's log; then run deploy again.",
            )
    after = _listing(node, ctr) if todo else before
    rows = []
    for image in images:
        if image not in after:
            rows.append(PinRow(image, "missing"))
        elif after[image].get(PIN_LABEL) != PIN_VALUE:
            raise AirgapError(
                f"{node.name}: {image} does not carry {PINNED} after `ctr images label`",
                resolution=f"On {node.name}: `{' '.join(ctr)} -n k8s.io images ls` should "
                f"show {PINNED} in its LABELS column; see containerd's log.",
            )
        else:
            rows.append(PinRow(image, "pinned" if image in todo else "already pinned"))
    return rows


def parse_version(text: str) -> tuple[int, int, int] | None:
    """containerd's version from `ctr version` (the Server: section) or a bare version
    ("v2.0.5", "1.7.24~ds1"); None when there is none."""
    server = text.split("Server:", 1)[1] if "Server:" in text else text
    m = re.search(r"Version:\s*v?(\d+)\.(\d+)\.(\d+)", server) or re.search(
        r"\bv?(\d+)\.(\d+)\.(\d+)", server)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def honours_pins(version: tuple[int, int, int]) -> bool:
    """Whether this containerd's CRI reports a pin label added after the import."""
    for since in HONOURED_SINCE:
        if version[:2] == since[:2]:
            return version >= since
    return version >= HONOURED_SINCE[-1]


def runtime_version(node: Node, *, runtime: RuntimeAccess | None = None) -> str:
    """The containerd version the node's ctr reports for the daemon ("" if none)."""
    ctr = ctr_command(node, runtime)
    res = node.run([*ctr, "version"], check=False, timeout=60)
    found = parse_version(res.stdout) if res.ok else None
    return ".".join(map(str, found)) if found else ""


def gc_warning(node: str, version: str) -> str:
    """The report's warning for a runtime that keeps the label but does not report it
    to kubelet ("" when it does)."""
    parsed = parse_version(version) if version else None
    if parsed is not None and honours_pins(parsed):
        return ""
    if parsed is None:
        return (f"WARNING: {node}: could not read containerd's version (`ctr version`), so "
                f"whether its CRI reports the pin to kubelet is not known: that needs "
                f"{NEEDED}; on older runtimes kubelet's image garbage collection may remove "
                "side-loaded images, and offline they do not come back")
    return (f"WARNING: {node}: containerd {version} does not report the pin label to "
            "kubelet, so kubelet's image garbage collection may remove side-loaded images, "
            f"and offline they do not come back; pinning needs {NEEDED}")


@dataclass(frozen=True)
class CRIPin:
    image: str
    present: bool
    pinned: bool

    @property
    def ok(self) -> bool:
        return self.present and self.pinned


class ImageStatusSource(Protocol):
    """What cri_pins needs of airgap.cri.CRIClient."""

    def image_status(self, image: str) -> Image | None: ...


def cri_pins(client: ImageStatusSource, images: Sequence[str]) -> list[CRIPin]:
    """Each image's pinned flag as the CRI reports it (ImageStatus), which is what
    kubelet's image GC reads: call it with an airgap.cri.CRIClient on the node's CRI
    socket (the lab exposes it on the host) after deploy pinned the images."""
    out = []
    for image in images:
        status = client.image_status(image)
        out.append(CRIPin(image, status is not None, bool(status and status.pinned)))
    return out


def cri_pin_error(node: str, pins: Sequence[CRIPin], version: str = "") -> AirgapError | None:
    """None when the CRI reports every image present and pinned; otherwise an error
    naming the images, with the version this needs (``version``: the runtime's, from
    CRIClient.version().runtime_version)."""
    missing = [p.image for p in pins if not p.present]
    unpinned = [p.image for p in pins if p.present and not p.pinned]
    if not missing and not unpinned:
        return None
    parts = []
    if missing:
        parts.append(f"not in the runtime: {', '.join(missing[:3])}")
    if unpinned:
        parts.append(f"not pinned in the CRI: {', '.join(unpinned[:3])}"
                     + (" ..." if len(unpinned) > 3 else ""))
    fix = ("Run `invoke deploy` again: it imports every side-loaded image and labels it "
           f"{PINNED}.")
    if unpinned:
        fix += (" If `ctr -n k8s.io images ls` on the node shows that label and the CRI "
                f"still reports pinned=false, the runtime is too old: pinning needs {NEEDED}.")
    return AirgapError(
        f"{node}: side-loaded images {'; '.join(parts)}",
        details=(gc_warning(node, version) or None) if unpinned else None,
        resolution=fix,
    )
