"""The report page: assets/index.html with its CSS and scripts inlined, written as OUT/index.html.

One HTML file with no outside reference (no CDN, no font, no fetch): it opens from disk, offline. It loads the data
from the sibling data.js; it does not compute anything itself.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
SCRIPTS = ("whatif.js", "report.js")
"""Inlined in this order: whatif.js (the twin of decide.py's rule) before the page code that uses it."""


def render_page() -> str:
    html = (ASSETS / "index.html").read_text(encoding="utf-8")
    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    js = "\n".join((ASSETS / name).read_text(encoding="utf-8") for name in SCRIPTS)
    if "</script" in js.lower() or "</style" in css.lower():
        raise ValueError("a report asset closes its own <script>/<style> tag: it cannot be inlined")
    return html.replace("/*STYLE*/", css).replace("/*SCRIPT*/", js)


def write_page(out: Path) -> Path:
    path = Path(out) / "index.html"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_page(), encoding="utf-8")
    tmp.replace(path)
    return path
