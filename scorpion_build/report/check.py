"""Check a written report: every picture it shows exists, decodes and is not blank."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np

# a picture whose pixel values spread less than this (grey levels, standard deviation) shows
# nothing: an empty canvas, a failed render, a uniform placeholder
BLANK_STD = 2.0


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def picture_sources(page: Path) -> list[str]:
    """The ``src`` of every ``<img>`` of an HTML page, in order."""
    parser = _Images()
    parser.feed(Path(page).read_text(encoding="utf-8"))
    return parser.sources


def check_pictures(page: Path) -> list[str]:
    """Problems with the pictures of ``page`` (an ``index.html``), one line each: a picture
    that is missing, outside the page's folder tree by URL, unreadable or blank. Empty when
    all is well."""
    page = Path(page)
    problems = []
    for src in picture_sources(page):
        if not src or "://" in src or src.startswith(("/", "data:")):
            problems.append(f"{src or '(empty src)'}: not a relative file path")
            continue
        path = page.parent / src
        if not path.is_file():
            problems.append(f"{src}: missing")
            continue
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            problems.append(f"{src}: cannot be decoded")
        elif float(np.std(image)) < BLANK_STD:
            problems.append(f"{src}: blank (a single colour)")
    return problems
