"""Renderers: pure functions from the plan to file contents. No I/O here.

Each returns RenderedFile values: the absolute path on the node (or a path relative
to the connected side's output directory), the bytes, and the file mode. Writing
them is someone else's job (``invoke render``, deploy).
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
