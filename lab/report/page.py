"""One page shell for every HTML report: doctype, charset, title, the shared CSS, the body.

The sweep report, the n-of-k report, both comparison reports, the distribution-shift report and
the quickstart index all come out of `page`, so they look alike and share one stylesheet: a
readable column, tables with a header shade, wrapping <pre> blocks, and the verdict classes
(pass / better, fail / worse, same, flag, high / medium / low severity). A report adds rules
only for what is its own (the comparison's interval bars). Pages are self-contained: no
script, no external resource; `overflow-wrap:anywhere` makes a 100 kB word in model output wrap
instead of widening the page.

    from lab.report.page import page
    html = page("n-of-k variance", ["<h1>...</h1>", table])   # callers escape their parts
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;"
    "overflow-wrap:anywhere}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}"
    "pre{white-space:pre-wrap;background:#f8f8f8;padding:6px;margin:0;max-width:640px;"
    "font-size:12px}"
    "li{margin:.3em 0}"
    ".pass,.better{color:#1e8449}.fail,.worse{color:#c0392b}.same{color:#555}"
    ".flag{background:#fdebd0;padding:6px}"
    ".high{background:#f5b7b1}.medium{background:#fdebd0}.low{background:#fcf3cf}"
    ".side{display:grid;grid-template-columns:1fr 1fr;gap:8px}"
)


def page(title: str, parts: Iterable[str], css: str = "", sep: str = "\n") -> str:
    """A whole HTML page: `title` (plain text, escaped here) and the body `parts` (HTML, each
    already escaped by its caller), joined by `sep`; `css` adds rules after the shared ones."""
    head = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{CSS}{css}</style></head><body>"
    )
    return head + sep + sep.join(parts) + sep + "</body></html>\n"
