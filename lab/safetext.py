"""Untrusted text (model outputs, prompts, case ids, tags, run names, error messages) made
safe for the Markdown and HTML reports and for a terminal, and any text made writable as UTF-8.

A foundation module (it imports nothing of the lab): reports, run directories and backends
(a server's error body printed to a terminal) all escape through here.

    from lab.safetext import md_cell, md_code, scrub
    f"| {md_cell(case_id)} | {md_cell(output, 60)} |"   # a table cell, list item or heading
    f"`{md_code(output)}`"                              # the inside of a code span
    store.write_text(REPORT, scrub(page))               # lone surrogates -> U+FFFD
    click.echo(f"error: {terminal(server_text)}")       # controls shown as \\x1b, inert
    click.echo(plain_cell(case_id))                     # md_cell's one line, for a terminal
    f"<li>{inline(model_output)}</li>"                  # escaped HTML, bidi isolated

Markdown is rendered by viewers that pass raw HTML through, so md_cell backslash-escapes `<`
(no tag, comment or autolink can start), `[` and `]` (no link or image: no javascript: URL,
no remote image loaded on view), `|` (a table keeps its columns) and `\\` (so an escape in
the text cannot unescape ours); every run of whitespace, line breaks included, becomes one
space, so nothing starts a new line (no injected heading, list or table row), and a leading
`#`, `>` or list marker (`- `, `+ `, `* `) is escaped. Backticks become `'` (no code span
opens). Other control characters (NUL, ESC...: `lab library show` prints summary.md to a
terminal) and lone surrogates (from a JSON `\\ud800` escape; UTF-8 cannot encode them) become
U+FFFD.

`terminal` is for text from elsewhere (a server's error body) printed to a terminal: every
C0 / C1 control but tab (ESC starts an escape sequence that acts on the terminal; a line
break would forge output lines) is shown as `\\xNN`. `inline` is for an untrusted value
inside running HTML text: escaped, and wrapped in <bdi> so a bidi control in it (U+202E
RIGHT-TO-LEFT OVERRIDE) cannot reorder the rest of the sentence.
"""

from __future__ import annotations

import html
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
#: C0 / C1 controls and DEL that are not whitespace (whitespace is collapsed separately)
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_MD_ESCAPE = re.compile(r"([\\|<\[\]])")
_LINE_END = re.compile(r"\r\n|[\r\n\u2028\u2029\x0b\x0c\x1c-\x1e\x85]")
REPLACEMENT = "\ufffd"
_TERMINAL_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def scrub(text: str) -> str:
    """`text` with lone surrogates replaced, so it encodes as UTF-8."""
    return _SURROGATE.sub(REPLACEMENT, text)


def scrub_all(value: Any) -> Any:
    """scrub() every string inside lists, tuples and dicts (keys too)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_all(k): scrub_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub_all(v) for v in value)
    return value


def md_cell(text: Any, limit: int | None = None) -> str:
    """One line of inert Markdown text: a table cell, a list item, part of a heading.
    `limit`: at most this many characters of the text (before escaping), '...' marking a cut."""
    s = " ".join(str(text).split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 3] + "..."
    s = _CONTROL.sub(REPLACEMENT, scrub(s)).replace("`", "'")
    s = _MD_ESCAPE.sub(r"\\\1", s)
    # At the start of a list item or heading these would open a heading, quote or sub-list.
    return "\\" + s if s[:1] in ("#", ">") or s[:2] in ("- ", "+ ", "* ") else s


def plain_cell(text: Any, limit: int | None = None) -> str:
    """md_cell's one line for a terminal instead of a Markdown viewer: whitespace collapsed,
    cut at `limit`, controls shown as \\xNN (terminal()), and no Markdown escapes."""
    s = " ".join(str(text).split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 3] + "..."
    return terminal(s)


def md_code(text: Any) -> str:
    """The inside of a one-line `code span`: line breaks shown as \\n, backticks as '."""
    s = _LINE_END.sub("\\\\n", str(text))
    return _CONTROL.sub(REPLACEMENT, scrub(s)).replace("`", "'")


def terminal(text: Any) -> str:
    """`text` safe to print to a terminal: controls but tab shown as \\xNN, one line."""
    return _TERMINAL_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", scrub(str(text)))


def inline(text: Any) -> str:
    """An untrusted value in running HTML text: escaped, bidi-isolated in <bdi>."""
    return f"<bdi>{html.escape(str(text))}</bdi>"
