"""Example `python` checks (used by the bundled case set; copy the shape for your own).

A python check is named "module:function" in a case and called as f(output, case, **args); it
returns a bool, (bool, reason) or a CheckResult.

    checks: [{python: "lab.variance.examples:comma_list", args: {count: 3}}]
"""

from __future__ import annotations

import re
from typing import Any


def comma_list(output: str, case: Any = None, count: int = 3) -> tuple[bool, str]:
    """The first line is a comma-separated list of exactly `count` non-empty items."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return False, "empty output"
    items = [item.strip(" .") for item in lines[0].split(",")]
    items = [re.sub(r"^(and|or)\s+", "", item) for item in items if item]
    if len(items) != count:
        return False, f"{len(items)} comma-separated items, expected {count}"
    return True, f"{count} items"


def word_count(output: str, case: Any = None, max_words: int = 1) -> tuple[bool, str]:
    """At most `max_words` words (punctuation ignored)."""
    words = re.findall(r"[\w'-]+", output)
    if not words:
        return False, "no words"
    if len(words) > max_words:
        return False, f"{len(words)} words, at most {max_words} allowed"
    return True, f"{len(words)} words"


def no_letter(output: str, case: Any = None, letter: str = "e") -> tuple[bool, str]:
    """A non-empty answer that avoids `letter` (either case)."""
    if not output.strip():
        return False, "empty output"
    hits = output.lower().count(letter.lower())
    return (hits == 0, "letter absent" if hits == 0 else f"uses {letter!r} {hits} times")
