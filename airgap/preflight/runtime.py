"""What the node's runtime would read already: every hosts.toml under its hosts.d.

A hosts.toml left on a node (the upstream procedure's unquoted ``server = https://...``
is not TOML, and containerd drops the whole file) breaks pulls for that registry even
though everything deploy writes is right. Each file is read in one command per node and
checked with the rules render checks its own files with (airgap.render.hosts.
check_hosts_toml), and compared with what render would write there.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from airgap.nodes import Node
from airgap.plan import Plan
from airgap.preflight.report import Check, CheckStatus
from airgap.render import RenderedFile
from airgap.render.hosts import check_hosts_toml

MARK = "--- k8s-airgap hosts.toml: "
# Prints every file under the hosts dir, each path after a marker line, and the content
# of each hosts.toml after its path: one exec per node, whatever the number of files.
LIST_SCRIPT = f"""d=$1
[ -d "$d" ] || exit 0
find "$d" -mindepth 1 -maxdepth 2 -type f | sort | while read -r f; do
  printf '%s%s\\n' '{MARK}' "$f"
  case "$f" in */hosts.toml) cat "$f"; echo ;; esac
done"""


def parse_listing(stdout: str) -> dict[str, str]:
    """LIST_SCRIPT's output -> {path: content} (content "" for files that are not hosts.toml)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK):
            current = files.setdefault(line[len(MARK):], [])
        elif current is not None:
            current.append(line)
    return {path: "\n".join(lines).rstrip("\n") + ("\n" if lines else "")
            for path, lines in files.items()}


def hosts_checks(listing: dict[str, str], rendered: Sequence[RenderedFile],
                 hosts_dir: str, registries_used: set[str]) -> list[Check]:
    """One check per hosts.toml on the node: broken for a registry the images use is a
    failure, broken for another registry a warning (it breaks only pulls from there),
    valid but not what deploy writes a warning (deploy replaces it)."""
    want = {f.path: f.content.decode() for f in rendered if f.path.endswith("/hosts.toml")}
    files = set(listing)
    out: list[Check] = []
    for path, content in sorted(listing.items()):
        if not path.endswith("/hosts.toml"):
            continue
        directory = path.rsplit("/", 1)[0]
        registry = directory.rsplit("/", 1)[-1]
        problems = check_hosts_toml(content, directory=directory,
                                    exists=lambda p: p in files or p in want)
        name = f"hosts.toml {registry}"
        if problems:
            used = registry in registries_used
            fix = ("`invoke deploy` rewrites it" if path in want else
                   f"fix or remove {path} (the plan does not write it)")
            out.append(Check(name, CheckStatus.fail if used else CheckStatus.warn,
                             f"{path}: {problems[0]}" + (
                                 f" (and {len(problems) - 1} more)" if problems[1:] else "")
                             + ("" if used else "; no image of the plan comes from there"),
                             fix))
        elif path in want and content != want[path]:
            out.append(Check(name, CheckStatus.warn, f"{path}: valid, but not what deploy "
                             "writes (`invoke render` shows it)", "`invoke deploy` replaces it"))
        elif path in want:
            out.append(Check(name, CheckStatus.ok, f"{path}: as rendered"))
        else:
            out.append(Check(name, CheckStatus.ok, f"{path}: valid (not written by the plan)"))
    if not out:
        out.append(Check("hosts.toml", CheckStatus.ok, f"none under {hosts_dir} yet"))
    return out


def check_hosts_files(node: Node, plan: Plan, rendered: Sequence[RenderedFile],
                      registries_used: set[str]) -> list[Check]:
    hosts_dir = plan.k8s.hosts_dir
    res = node.run(["sh", "-c", LIST_SCRIPT, "sh", hosts_dir], check=False, timeout=60)
    if not res.ok:
        return [Check("hosts.toml", CheckStatus.fail,
                      f"cannot read {hosts_dir}: {res.stderr.strip() or res.returncode}",
                      f"on {node.name}: {shlex.join(['ls', '-l', hosts_dir])}")]
    return hosts_checks(parse_listing(res.stdout), rendered, hosts_dir, registries_used)
