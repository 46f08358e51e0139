"""systemd unit files (drop-ins, networkd .network files): quoting and the layout.

The layout is the jinja2 template airgap/templates/unit.j2; values are checked here
first, so nothing a plan holds can add a line to a unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from airgap.templates import render_template


def systemd_quote(assignment: str) -> str:
    """One Environment= word, quoted the way systemd unquotes it.

    Double quotes protect spaces; backslash and double quote are escaped; '%' is a
    unit-file specifier and must be doubled.
    """
    if any(c in assignment for c in "\n\r\0"):
        raise ValueError(f"{assignment!r}: a newline cannot be put in a unit file")
    escaped = assignment.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def unit_file(sections: Sequence[tuple[str, Iterable[tuple[str, str]]]], header: str = "") -> str:
    """A systemd unit file (also .network files) from sections of key/value pairs
    (the jinja2 template airgap/templates/unit.j2)."""
    rows = [(name, list(items)) for name, items in sections]
    for _, items in rows:
        for key, value in items:
            if any(c in value for c in "\n\r\0"):
                raise ValueError(f"{key}={value!r}: a newline cannot be put in a unit file")
    return render_template("unit.j2", sections=rows, header=header)
