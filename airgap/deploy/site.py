"""The site's history: which bundle each node runs, kept beside the plan.

Deploy decides from the nodes themselves (``snap list``, ``k8s local-node-status``);
this record answers what the nodes cannot: which bundle (manifest.json's sha256) put
the running revision there, so that ``prepare --since`` has the manifest of the last
bundle the site received and adding a node names the bundle the cluster runs. It lives
in ``<plan stem>.site/`` next to the plan (airgap.yaml -> airgap.site/):
``history.json`` (per node: the bundle, the k8s version and revision, when, by which
task; and every event in order) and ``manifests/<sha256>.json``, a copy of each
bundle's manifest, the file to carry to the connected side for ``prepare --since``.
Written atomically after each node's change, so an interrupted upgrade leaves a true
record of the nodes already changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from airgap.bundle import Bundle
from airgap.errors import AirgapError
from airgap.fileio import write_atomic
from airgap.plan import Plan

HISTORY = "history.json"
MANIFESTS = "manifests"
FORMAT = "k8s-airgap-site"


@dataclass(frozen=True)
class NodeRecord:
    """What one node runs, by the last task that changed it."""

    node: str
    manifest_sha256: str
    k8s_version: str
    k8s_revision: str
    at: str  # UTC, "YYYY-MM-DDTHH:MM:SSZ"
    task: str  # deploy, upgrade, add-node


@dataclass
class SiteHistory:
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    events: list[NodeRecord] = field(default_factory=list)
    source: Path | None = None  # history.json it was read from (None: not yet written)

    def last(self) -> NodeRecord | None:
        """The newest change on any node: its bundle is the last the site received."""
        return self.events[-1] if self.events else None


def site_dir(plan: Plan) -> Path:
    stem = Path(plan.source).stem if plan.source != "<plan>" else "airgap"
    return plan.base_dir / f"{stem}.site"


def manifest_digest(bundle: Path) -> str:
    """sha256 of a bundle's manifest.json bytes: the name of that bundle."""
    return hashlib.sha256(Bundle(bundle).manifest.read_bytes()).hexdigest()


def read_history(plan: Plan) -> SiteHistory:
    path = site_dir(plan) / HISTORY
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return SiteHistory()
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AirgapError(f"{path}: cannot read the site's history ({exc})",
                          resolution="Restore it from a backup, or move it away: the next "
                          "deploy or upgrade writes a new one (the nodes are the state; "
                          "only the record of bundles is lost).") from None
    try:
        if doc.get("format") != FORMAT:
            raise KeyError("format")
        nodes = {n: NodeRecord(**r) for n, r in doc["nodes"].items()}
        events = [NodeRecord(**r) for r in doc["events"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise AirgapError(f"{path}: not a k8s-airgap site history (field {exc})",
                          resolution="Move it away; the next deploy or upgrade writes a new "
                          "one.") from None
    return SiteHistory(nodes, events, path)


def record(plan: Plan, bundle: Path, nodes: list[str], *, version: str, revision: str,
           task: str, now: datetime | None = None) -> SiteHistory:
    """Record that ``nodes`` now run ``bundle``'s k8s (version, revision), and keep a copy
    of its manifest. Returns the new history."""
    history = read_history(plan)
    digest = manifest_digest(bundle)
    where = site_dir(plan)
    copy = where / MANIFESTS / f"{digest}.json"
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_suffix(".tmp")
        shutil.copyfile(Bundle(bundle).manifest, tmp)
        tmp.replace(copy)
    at = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in nodes:
        rec = NodeRecord(name, digest, version, revision, at, task)
        history.nodes[name] = rec
        history.events.append(rec)
    doc = {"format": FORMAT, "version": 1,
           "nodes": {n: asdict(r) for n, r in sorted(history.nodes.items())},
           "events": [asdict(r) for r in history.events]}
    history.source = write_atomic(where / HISTORY, json.dumps(doc, indent=2) + "\n")
    return history


def manifest_copy(plan: Plan, digest: str) -> Path | None:
    path = site_dir(plan) / MANIFESTS / f"{digest}.json"
    return path if path.is_file() else None
