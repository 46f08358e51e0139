"""Renderers: pure functions from the plan to file contents.

Each returns RenderedFile values: the absolute path on the node (or a path relative
to the connected side's output directory), the bytes, and the file mode. Nothing here
reads or writes files, except ``write``, which puts a finished render on disk for
``invoke render`` (deploy puts the same files on nodes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderedFile:
    path: str
    content: bytes
    mode: int = 0o644

    @property
    def text(self) -> str:
        return self.content.decode()
