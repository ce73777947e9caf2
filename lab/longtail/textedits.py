"""Text edits: the string transforms behind the worst-case input library, one per way
production text arrives broken. Each is a small pure function `f(text, rng, **params) -> Edit
| None` (None: it does not apply to this text, e.g. no digits to rewrite); `rng` is a numpy
Generator the caller seeds, so one seed always gives the same edit.

    typos         adjacent swaps, QWERTY-neighbour substitutions, dropped and doubled characters
    truncation    by characters, by tokens (a model's tokenizer, else whitespace tokens), or the
                  trailing field of a structured input (JSON object / "key: value" lines)
    mojibake      typographic text (curly quotes, dashes, no-break spaces) whose UTF-8 bytes are
                  decoded as cp1252 or Latin-1: "it’s" -> "itâ€™s"; `unmojibake` reverses it
    locale        a sentence in another language or script, non-ASCII digits (Arabic-Indic,
                  Devanagari, ...), other number formats (1.234,5) and date formats (27/11/2026)
    noise         whitespace, punctuation and case noise
    fields        a missing or empty field in a structured input
    paraphrase    the instruction wrapped in a fixed template

lab.longtail.perturb groups them into families and applies them to cases.

    from lab.longtail.textedits import typos
    edit = typos("What is the capital of France?", np.random.default_rng(0), rate=0.1)
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.errors import LabError


@dataclass(frozen=True)
class Edit:
    """A perturbed text and what was done to it (JSON-ready parameters)."""

    text: str
    params: dict[str, Any]
    #: why the expected answer may differ, when the family itself knows (e.g. a cut prompt)
    may_change: str | None = None


# --- typos ---------------------------------------------------------------------------------

_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _qwerty_neighbours() -> dict[str, str]:
    """Keys next to each key on a staggered QWERTY board (same row, and the rows around)."""
    out: dict[str, str] = {}
    for r, row in enumerate(_ROWS):
        for i, key in enumerate(row):
            near = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            if r > 0:  # the row above is shifted left by half a key
                near += [_ROWS[r - 1][j] for j in (i, i + 1) if 0 <= j < len(_ROWS[r - 1])]
            if r + 1 < len(_ROWS):
                near += [_ROWS[r + 1][j] for j in (i - 1, i) if 0 <= j < len(_ROWS[r + 1])]
            out[key] = "".join(near)
    return out


QWERTY_NEIGHBOURS = _qwerty_neighbours()
TYPO_OPS = ("swap", "substitute", "drop", "double")


def typos(text: str, rng: np.random.Generator, rate: float = 0.05) -> Edit | None:
    """Each letter or digit is hit with probability `rate` (at least one is) by one of TYPO_OPS."""
    eligible = [i for i, ch in enumerate(text) if ch.isascii() and ch.isalnum()]
    if not eligible:
        return None
    hit = rng.random(len(eligible)) < rate
    chosen = [i for i, h in zip(eligible, hit, strict=True) if h]
    if not chosen:
        chosen = [eligible[int(rng.integers(len(eligible)))]]
    ops = [TYPO_OPS[int(x)] for x in rng.integers(len(TYPO_OPS), size=len(chosen))]
    chars = list(text)
    # Right to left, so an edit never shifts the positions still to be edited.
    for i, op in sorted(zip(chosen, ops, strict=True), reverse=True):
        if op == "swap" and i + 1 < len(chars) and chars[i + 1] != chars[i]:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op == "drop":
            del chars[i]
        elif op == "double":
            chars.insert(i, chars[i])
        else:  # substitute (also a swap with nothing to swap with)
            # Letters stay letters and digits stay digits: a typo that turns "w" into "2" is
            # rare, and it would change the numbers of the prompt.
            near = "".join(
                c for c in QWERTY_NEIGHBOURS[chars[i].lower()] if c.isdigit() == chars[i].isdigit()
            )
            new = near[int(rng.integers(len(near)))]
            chars[i] = new.upper() if chars[i].isupper() else new
    return Edit("".join(chars), {"rate": rate, "edits": dict(sorted(Counter(ops).items()))})


# --- truncation ----------------------------------------------------------------------------


def _keep(rng: np.random.Generator, keep: float | None) -> float:
    return float(rng.uniform(0.4, 0.8)) if keep is None else keep


def _cut_note(text: str, kept: str) -> str | None:
    """Why a cut may change the answer; None when whole sentences after a question that is
    still complete were removed (e.g. "What is 2+2? Answer with a number." -> "What is 2+2?")."""
    if kept.rstrip().endswith(("?", "\uff1f")):
        return None
    gone = " ".join(text[len(kept) :].split()) if text.startswith(kept) else "(re-tokenized)"
    return f"truncation cut the prompt, the question may be incomplete: removed {gone[:40]!r}"


def truncate_chars(text: str, rng: np.random.Generator, keep: float | None = None) -> Edit:
    """Keep the first `keep` share of the characters (drawn from [0.4, 0.8) when None)."""
    share = _keep(rng, keep)
    at = max(1, int(len(text) * share))
    params = {"mode": "chars", "keep": round(share, 4), "chars": at}
    return Edit(text[:at], params, _cut_note(text, text[:at]))


def truncate_tokens(
    text: str, rng: np.random.Generator, keep: float | None = None, tokenizer: Any = None
) -> Edit | None:
    """Keep the first `keep` share of the tokens: the tokenizer's (anything with encode/decode,
    e.g. a transformers tokenizer) when given, else whitespace-separated words."""
    share = _keep(rng, keep)
    if tokenizer is not None:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) < 2:
            return None
        n = max(1, int(len(ids) * share))
        cut = tokenizer.decode(ids[:n])
        unit = "tokenizer"
    else:
        words = text.split()
        if len(words) < 2:
            return None
        n = max(1, int(len(words) * share))
        # Keep the original spacing of the words that stay.
        cut = re.match(r"\s*" + r"\s+".join(re.escape(w) for w in words[:n]), text).group(0)  # type: ignore[union-attr]
        unit = "whitespace"
    total = len(ids) if tokenizer is not None else len(words)
    params = {"mode": "tokens", "unit": unit, "keep": round(share, 4), "tokens": n, "of": total}
    return Edit(cut, params, _cut_note(text, cut))


# --- structured inputs: JSON objects and "key: value" lines --------------------------------

_KV_LINE = re.compile(r"^([ \t]*)([A-Za-z][\w.-]*(?: [\w.-]+){0,2})[ \t]*:[ \t]*(.*?)[ \t]*$", re.M)


@dataclass(frozen=True)
class _Field:
    """One field found in a text: where it is and how to rewrite it."""

    name: str
    value: Any
    start: int
    end: int
    #: the text without the field / with the field emptied
    missing: str
    empty: str


def _json_fields(text: str) -> list[_Field]:
    decoder = json.JSONDecoder()
    out: list[_Field] = []
    i = text.find("{")
    while i >= 0:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict) and obj:
            span = text[i:end]
            indent = 2 if "\n" in span else None

            def dump(
                value: dict[str, Any], start: int = i, stop: int = end, indent: int | None = indent
            ) -> str:
                body = json.dumps(value, ensure_ascii=False, indent=indent)
                return text[:start] + body + text[stop:]

            for key, value in obj.items():
                without = {k: v for k, v in obj.items() if k != key}
                emptied = obj | {key: "" if isinstance(value, str) else None}
                out.append(_Field(key, value, i, end, dump(without), dump(emptied)))
        i = text.find("{", end)
    return out


def _kv_fields(text: str) -> list[_Field]:
    lines = [m for m in _KV_LINE.finditer(text) if m.group(3)]
    if len(lines) < 2:  # one "Question: ..." line is prose, not a record
        return []
    out = []
    for m in lines:
        line_end = m.end() + 1 if text[m.end() : m.end() + 1] == "\n" else m.end()
        missing = text[: m.start()] + text[line_end:]
        empty = text[: m.start(3)] + text[m.end(3) :]
        out.append(_Field(m.group(2), m.group(3), m.start(), m.end(), missing, empty))
    return out


def structured_fields(text: str) -> list[_Field]:
    """The fields of the JSON objects in a text, else of its "key: value" lines."""
    return _json_fields(text) or _kv_fields(text)


def drop_trailing_field(text: str, rng: np.random.Generator) -> Edit | None:
    """Truncation of a record: its last field is gone (what a cut-off upstream write leaves)."""
    fields = structured_fields(text)
    if not fields:
        return None
    last = max(fields, key=lambda f: (f.start, fields.index(f)))
    params = {"mode": "field", "field": last.name}
    return Edit(last.missing, params, f"truncation dropped the trailing field {last.name!r}")


def drop_field(text: str, rng: np.random.Generator, how: str | None = None) -> Edit | None:
    """A random field goes missing (`how="missing"`) or is emptied (`how="empty"`)."""
    fields = structured_fields(text)
    if not fields:
        return None
    pick = fields[int(rng.integers(len(fields)))]
    how = how or ("missing", "empty")[int(rng.integers(2))]
    new = pick.missing if how == "missing" else pick.empty
    return Edit(new, {"mode": how, "field": pick.name})


# --- mojibake ------------------------------------------------------------------------------

# Bytes cp1252 leaves undefined; real decoders (and browsers) pass them through as Latin-1.
_CP1252_HOLES = {0x81, 0x8D, 0x8F, 0x90, 0x9D}


def _decode_sloppy(data: bytes, codec: str) -> str:
    if codec == "latin-1":
        return data.decode("latin-1")
    return "".join(chr(b) if b in _CP1252_HOLES else bytes([b]).decode("cp1252") for b in data)


def _encode_sloppy(text: str, codec: str) -> bytes:
    if codec == "latin-1":
        return text.encode("latin-1")
    out = bytearray()
    for ch in text:
        if ord(ch) in _CP1252_HOLES:
            out.append(ord(ch))
        else:
            out += ch.encode("cp1252")
    return bytes(out)


def mojibake(text: str, codec: str = "cp1252", rounds: int = 1) -> str:
    """UTF-8 bytes read as `codec` (cp1252 or latin-1), `rounds` times: "é" -> "Ã©"."""
    for _ in range(rounds):
        text = _decode_sloppy(text.encode("utf-8"), codec)
    return text


def unmojibake(text: str, codec: str = "cp1252", rounds: int = 1) -> str:
    """The reverse of `mojibake`: unmojibake(mojibake(t, c, r), c, r) == t for every text."""
    for _ in range(rounds):
        try:
            text = _encode_sloppy(text, codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not {codec} mojibake of UTF-8 text: {exc}") from None
    return text


_TYPOGRAPHY = (("'", "\u2019"), (" - ", " \u2013 "), ("...", "\u2026"))


def typographic(text: str, rng: np.random.Generator) -> str:
    """What an editor or phone keyboard makes of plain text: curly quotes and apostrophes,
    en dashes, ellipses, and no-break spaces (at least one, so ASCII text has bytes to garble)."""
    for plain, fancy in _TYPOGRAPHY:
        text = text.replace(plain, fancy)
    # "a" -> “a”: alternate opening and closing quotes.
    parts = text.split('"')
    text = "".join(p + ("\u201c" if i % 2 == 0 else "\u201d") for i, p in enumerate(parts[:-1]))
    text += parts[-1]
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if spaces:
        hit = [i for i, h in zip(spaces, rng.random(len(spaces)) < 0.15, strict=True) if h]
        hit = hit or [spaces[int(rng.integers(len(spaces)))]]
        chars = list(text)
        for i in hit:
            chars[i] = "\u00a0"
        text = "".join(chars)
    return text


def double_encoded(
    text: str, rng: np.random.Generator, codec: str | None = None, rounds: int = 1
) -> Edit | None:
    """Typographic text garbled by a pipeline that decodes UTF-8 as cp1252 or Latin-1."""
    codec = codec or ("cp1252", "latin-1")[int(rng.integers(2))]
    fancy = typographic(text, rng)
    garbled = mojibake(fancy, codec, rounds)
    if garbled == text:
        return None
    return Edit(garbled, {"codec": codec, "rounds": rounds})


# --- locale --------------------------------------------------------------------------------

DIGIT_SCRIPTS = {
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "extended-arabic-indic": "۰۱۲۳۴۵۶۷۸۹",
    "devanagari": "०१२३४५६७८९",
    "bengali": "০১২৩৪৫৬৭৮৯",
    "fullwidth": "０１２３４５６７８９",
}

# "Please answer briefly." in other languages and scripts: harmless to the task, foreign to
# a model tuned on one language.
FOREIGN_SENTENCES = {
    "es": "Por favor, responde brevemente.",
    "de": "Bitte antworte kurz.",
    "fr": "Réponds brièvement, s’il te plaît.",
    "ru": "Пожалуйста, ответьте кратко.",
    "ar": "من فضلك أجب باختصار.",
    "hi": "कृपया संक्षेप में उत्तर दें।",
    "zh": "请简短回答。",
    "ja": "簡潔に答えてください。",
}

# (thousands separator, decimal separator) per number style
NUMBER_STYLES = {
    "de": (".", ","),
    "fr": ("\u202f", ","),
    "ch": ("'", "."),
    "en-IN": (",", "."),
}
DATE_STYLES = {
    "dmy-slash": "{d:02d}/{m:02d}/{y}",
    "dmy-dot": "{d:02d}.{m:02d}.{y}",
    "ymd-jp": "{y}年{m}月{d}日",
}

_NUMBER = re.compile(r"(?<![\w.,/:-])(\d+)(?:\.(\d+))?(?![\w/:-]|[.,]\d)")
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")


def _pick(rng: np.random.Generator, options: Any, given: str | None) -> str:
    names = sorted(options)
    if given is None:
        return names[int(rng.integers(len(names)))]
    if given not in options:
        raise LabError(f"unknown option {given!r}; use one of {names}")
    return given


def foreign_sentence(text: str, rng: np.random.Generator, language: str | None = None) -> Edit:
    """A sentence in another language or script before or after the prompt."""
    language = _pick(rng, FOREIGN_SENTENCES, language)
    sentence = FOREIGN_SENTENCES[language]
    where = ("before", "after")[int(rng.integers(2))]
    new = f"{sentence} {text}" if where == "before" else f"{text} {sentence}"
    return Edit(new, {"mode": "sentence", "language": language, "where": where})


def locale_digits(text: str, rng: np.random.Generator, script: str | None = None) -> Edit | None:
    """ASCII digits written in another script (the values stay the same)."""
    if not re.search(r"[0-9]", text):
        return None
    script = _pick(rng, DIGIT_SCRIPTS, script)
    new = text.translate(str.maketrans("0123456789", DIGIT_SCRIPTS[script]))
    return Edit(new, {"mode": "digits", "script": script})


def _group(digits: str, sep: str, indian: bool) -> str:
    if len(digits) <= 3:
        return digits
    head, tail = digits[:-3], digits[-3:]
    if indian:  # 12,34,567
        groups = [head[max(0, i - 2) : i] for i in range(len(head), 0, -2)][::-1]
    else:
        groups = [head[max(0, i - 3) : i] for i in range(len(head), 0, -3)][::-1]
    return sep.join(groups + [tail])


def locale_numbers(text: str, rng: np.random.Generator, style: str | None = None) -> Edit | None:
    """Numbers of 4+ digits or with decimals in another format: 1234.5 -> 1.234,5 (de)."""
    targets = [m for m in _NUMBER.finditer(text) if len(m.group(1)) >= 4 or m.group(2)]
    if not targets:
        return None
    style = _pick(rng, NUMBER_STYLES, style)
    sep, dec = NUMBER_STYLES[style]

    def fmt(m: re.Match[str]) -> str:
        if not (len(m.group(1)) >= 4 or m.group(2)):
            return m.group(0)
        whole = _group(m.group(1), sep, style == "en-IN")
        return whole + (dec + m.group(2) if m.group(2) else "")

    return Edit(_NUMBER.sub(fmt, text), {"mode": "numbers", "style": style})


def locale_dates(text: str, rng: np.random.Generator, style: str | None = None) -> Edit | None:
    """ISO dates (2026-11-27) in another order and form: 27/11/2026, 27.11.2026, 2026年11月27日."""
    if not _ISO_DATE.search(text):
        return None
    style = _pick(rng, DATE_STYLES, style)

    def fmt(m: re.Match[str]) -> str:
        y, mo, d = (int(g) for g in m.groups())
        return DATE_STYLES[style].format(y=y, m=mo, d=d)

    return Edit(_ISO_DATE.sub(fmt, text), {"mode": "dates", "style": style})


# --- noise ---------------------------------------------------------------------------------

_PUNCT = ".,;:!?"


def whitespace_noise(text: str, rng: np.random.Generator, rate: float = 0.3) -> Edit:
    """Spaces become double spaces, tabs or line breaks; stray whitespace at both ends."""
    out = []
    changed = 0
    for ch, r, pick in zip(
        text, rng.random(len(text)), rng.integers(3, size=len(text)), strict=True
    ):
        if ch == " " and r < rate:
            out.append(("  ", "\t", "\n")[int(pick)])
            changed += 1
        else:
            out.append(ch)
    new = "  " + "".join(out) + " \n"
    return Edit(new, {"mode": "whitespace", "rate": rate, "spaces_changed": changed})


def punctuation_noise(text: str, rng: np.random.Generator, rate: float = 0.5) -> Edit:
    """Punctuation dropped or doubled; a text without any gets a stray "??"."""
    marks = [i for i, ch in enumerate(text) if ch in _PUNCT]
    if not marks:
        return Edit(text + "??", {"mode": "punctuation", "dropped": 0, "doubled": 0, "added": 2})
    hit = [i for i, h in zip(marks, rng.random(len(marks)) < rate, strict=True) if h]
    hit = hit or [marks[int(rng.integers(len(marks)))]]
    drop = rng.random(len(hit)) < 0.5
    chars = list(text)
    for i, d in sorted(zip(hit, drop, strict=True), reverse=True):
        if d:
            del chars[i]
        else:
            chars.insert(i, chars[i])
    params = {"mode": "punctuation", "dropped": int(drop.sum()), "doubled": int((~drop).sum())}
    return Edit("".join(chars), params)


CASE_STYLES = ("lower", "upper", "random")


def case_noise(text: str, rng: np.random.Generator, style: str | None = None) -> Edit | None:
    """All lower case, ALL UPPER CASE, or random letters flipped."""
    style = style or CASE_STYLES[int(rng.integers(len(CASE_STYLES)))]
    if style == "lower":
        new = text.lower()
    elif style == "upper":
        new = text.upper()
    else:
        flips = rng.random(len(text)) < 0.3
        new = "".join(c.swapcase() if f else c for c, f in zip(text, flips, strict=True))
    if new == text:
        return None
    return Edit(new, {"mode": "case", "style": style})


# --- paraphrase ----------------------------------------------------------------------------

PARAPHRASES = (
    "Question: {text}\nAnswer:",
    "Please help me with this. {text}",
    "{text} Thanks!",
    "I need an answer to the following.\n\n{text}",
    "hey, quick one: {lower}",
    "Task: {text}",
    "My teacher asked me this and I am not sure. {text}",
    "{text}\n(answer as asked, nothing else)",
)


def paraphrase(text: str, rng: np.random.Generator, template: int | None = None) -> Edit:
    """The instruction wrapped in one of PARAPHRASES (the question itself is unchanged)."""
    index = int(rng.integers(len(PARAPHRASES))) if template is None else template
    lower = text[:1].lower() + text[1:]
    return Edit(PARAPHRASES[index].format(text=text, lower=lower), {"template": index})
