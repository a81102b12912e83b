"""Jinja templates for the ops page: whole pages, or one named block alone.

A page template declares its fragments as blocks (`{% block row %}`); an htmx
request or a live update renders just that block with `render_block`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2_fragments import render_block as _render_block
from starlette.applications import Starlette

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def environment(app: Starlette) -> jinja2.Environment:
    """The app's template environment, made once and kept on `app.state`.

    `url_for` gives paths (not absolute URLs), so a row rendered once for a
    live update is right for every page that receives it.
    """
    env: jinja2.Environment | None = getattr(app.state, "templates", None)
    if env is not None:
        return env
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["url_for"] = lambda name, **params: str(
        app.url_path_for(name, **params)
    )
    env.filters["iso"] = iso
    env.filters["utc"] = utc_text
    app.state.templates = env
    return env


def render(
    app: Starlette, template: str, context: dict[str, Any], block: str | None = None
) -> str:
    env = environment(app)
    if block is None:
        return env.get_template(template).render(context)
    return _render_block(env, template, block, context)


def iso(value: datetime | None) -> str:
    """A timestamp as UTC ISO-8601 for `<time datetime>`; app.js localises it."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_text(value: datetime | None) -> str:
    """The no-JavaScript fallback text of a `<time>`: `2030-01-01 09:00 UTC`."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
