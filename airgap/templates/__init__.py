"""jinja2 templates for what a person reads or edits: `invoke init`'s airgap.yaml and the
systemd/networkd unit files. Structured formats (TOML, YAML data, JSON) stay with their
serialisers. Rendering is strict: an undefined name is an error, never an empty string.
"""

from __future__ import annotations

from typing import Any

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("airgap", "templates"),
    autoescape=False,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
)


def render_template(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)
