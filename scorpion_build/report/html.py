"""Render the static HTML report with Jinja2 (templates in ``report/templates``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2

from scorpion_build.files import write_text_atomic

TEMPLATES = Path(__file__).parent / "templates"


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; '-' for missing (None, NaN)."""
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "-"
    return f"{number:.{digits}f}"


def signed(value: Any, digits: int = 2) -> str:
    """Like :func:`fmt` with an explicit sign, for deviations."""
    text = fmt(value, digits)
    if text != "-" and not text.startswith("-"):
        return "+" + text
    return text


def interval(values: Any, digits: int = 3) -> str:
    """``[low, high]`` of a bootstrap interval; '-' when there is none."""
    if not values:
        return "-"
    return f"[{fmt(values[0], digits)}, {fmt(values[1], digits)}]"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,  # a missing context key is a bug, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["signed"] = signed
    env.filters["interval"] = interval
    return env


def render_report(context: dict[str, Any], path: Path, template: str = "index.html") -> Path:
    """Render ``template`` with ``context`` to ``path`` (written atomically)."""
    html = environment().get_template(template).render(**context)
    return write_text_atomic(path, html)
