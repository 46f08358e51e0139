"""How long work reports progress: two callback shapes, named once.

``Say`` takes one line ("resolving image 3/12: ..."), for a step that runs here;
``NodeSay`` takes the node and the line, for steps that run on many nodes at once.
``quiet`` and ``node_quiet`` say nothing. The mirror, which reports phases with counts
and bytes, has its own protocol (airgap.mirror.MirrorProgress); the tasks draw all of
them with rich (airgap.show).
"""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]
NodeSay = Callable[[str, str], None]


def quiet(_line: str) -> None:
    """A Say that says nothing."""


def node_quiet(_node: str, _line: str) -> None:
    """A NodeSay that says nothing."""
