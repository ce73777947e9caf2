"""Worst-case inputs: perturb each case the way production text arrives, deterministically.

Each family is a small pure function `f(text, rng, **params) -> Edit | None` (None: the family
does not apply to this text, e.g. no digits to rewrite); `rng` is a numpy Generator the caller
seeds, so one seed always gives the same variants.

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

`perturb_cases` applies families to cases (the prompt, or the last user message) and returns
new cases linked to their source (metadata "perturbation": source id, kind, mode, parameters).
The checks are copied unchanged. When a variant's expected answer may no longer be the same
(the prompt was cut, a number changed, a value or field a check needs is gone) the variant is
MARKED: tag "answer-may-change" and metadata reasons, beside tags "perturbed" and
"perturbed:<kind>", so a report can show or exclude those cases instead of being silently wrong.

    from lab.longtail.perturb import perturb_cases, PerturbOptions
    variants, skipped = perturb_cases(load_cases("bundled:basic"), ["typos", "noise"], seed=0)
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.cases.checks import Contains, Exact, JSONCheck, Normalized, Numeric, OneOf
from lab.cases.model import Case
from lab.errors import LabError

MAY_CHANGE_TAG = "answer-may-change"


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


# --- families ------------------------------------------------------------------------------


@dataclass
class PerturbOptions:
    #: typo rate (share of letters and digits hit)
    rate: float = 0.05
    #: truncation: share kept (None: drawn per variant from [0.4, 0.8))
    keep: float | None = None
    #: truncation by tokens: a tokenizer with encode/decode (None: whitespace tokens)
    tokenizer: Any = None


def load_tokenizer(model: str, cache_dir: str | None = None) -> Any:
    """A model's tokenizer (bundled name, checkpoint directory or cached hub id)."""
    from transformers import AutoTokenizer

    from lab.models import resolve

    return AutoTokenizer.from_pretrained(str(resolve(model, cache_dir)))


Mode = Callable[[str, np.random.Generator, PerturbOptions], "Edit | None"]

FAMILIES: dict[str, list[tuple[str, Mode]]] = {
    "typos": [("typos", lambda t, r, o: typos(t, r, o.rate))],
    "truncation": [
        ("chars", lambda t, r, o: truncate_chars(t, r, o.keep)),
        ("tokens", lambda t, r, o: truncate_tokens(t, r, o.keep, o.tokenizer)),
        ("field", lambda t, r, o: drop_trailing_field(t, r)),
    ],
    "mojibake": [("mojibake", lambda t, r, o: double_encoded(t, r))],
    "locale": [
        ("sentence", lambda t, r, o: foreign_sentence(t, r)),
        ("digits", lambda t, r, o: locale_digits(t, r)),
        ("numbers", lambda t, r, o: locale_numbers(t, r)),
        ("dates", lambda t, r, o: locale_dates(t, r)),
    ],
    "noise": [
        ("whitespace", lambda t, r, o: whitespace_noise(t, r)),
        ("punctuation", lambda t, r, o: punctuation_noise(t, r)),
        ("case", lambda t, r, o: case_noise(t, r)),
    ],
    "fields": [("fields", lambda t, r, o: drop_field(t, r))],
    "paraphrase": [("paraphrase", lambda t, r, o: paraphrase(t, r))],
}
KINDS = tuple(FAMILIES)


def parse_kinds(text: str | None) -> list[str]:
    if not text:
        return list(KINDS)
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise LabError(f"--kinds {text!r}: names no family; use {', '.join(KINDS)}")
    unknown = [k for k in kinds if k not in FAMILIES]
    if unknown:
        raise LabError(f"--kinds: unknown perturbation {unknown[:1]}; use {', '.join(KINDS)}")
    return kinds


def variant_rng(seed: int, case_id: str, kind: str, variant: int) -> np.random.Generator:
    """One stream per (seed, case, kind, variant): a variant does not depend on which other
    cases or kinds were asked for, or their order."""
    digest = hashlib.sha256(f"{case_id}\0{kind}\0{variant}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def perturb_text(
    kind: str, text: str, rng: np.random.Generator, variant: int, options: PerturbOptions
) -> tuple[str, Edit] | None:
    """Variant `variant` of one family: its modes in turn (variant 0 the first, 1 the second,
    ...), moving on to the next mode that applies. Returns (mode, edit) or None."""
    modes = FAMILIES[kind]
    for step in range(len(modes)):
        name, fn = modes[(variant + step) % len(modes)]
        edit = fn(text, rng, options)
        if edit is not None and edit.text != text and edit.text.strip():
            return name, edit
    return None


# --- answer risks --------------------------------------------------------------------------


def _numbers(text: str) -> Counter[int]:
    """Values of the digit runs in a text (any script: int("٣٤") == 34)."""
    return Counter(int(run) for run in re.findall(r"\d+", text))


def _schema_parts(schema: Any, consts: list[Any], names: set[str]) -> None:
    if isinstance(schema, dict):
        if "const" in schema:
            consts.append(schema["const"])
        names.update(str(n) for n in schema.get("required", []) if isinstance(n, str))
        props = schema.get("properties")
        if isinstance(props, dict):
            names.update(props)
        for value in schema.values():
            _schema_parts(value, consts, names)
    elif isinstance(schema, list):
        for value in schema:
            _schema_parts(value, consts, names)


def check_literals(case: Case) -> tuple[list[tuple[str, bool]], list[float], set[str]]:
    """What the checks expect: (text, case-insensitive) literals, numbers, JSON field names."""
    texts: list[tuple[str, bool]] = []
    numbers: list[float] = []
    names: set[str] = set()
    for check in case.checks:
        if isinstance(check, Contains) and not check.negate:
            texts += [(v, check.ignore_case) for v in check.values]
        elif isinstance(check, Exact):
            texts += [(v, False) for v in check.values]
        elif isinstance(check, Normalized):
            texts += [(v, True) for v in check.values]
        elif isinstance(check, OneOf) and check.answer is not None:
            texts.append((check.answer, True))
        elif isinstance(check, Numeric):
            numbers.append(check.value)
        elif isinstance(check, JSONCheck):
            consts: list[Any] = []
            _schema_parts(check.spec.get("schema"), consts, names)
            for c in consts:
                if isinstance(c, str):
                    texts.append((c, False))
                elif isinstance(c, int | float) and not isinstance(c, bool):
                    numbers.append(float(c))
    return texts, numbers, names


def answer_risks(case: Case, kind: str, before: str, edit: Edit) -> list[str]:
    """Why the variant's checks may no longer hold (empty: the expected answer is unchanged)."""
    after = edit.text
    reasons = [edit.may_change] if edit.may_change else []
    texts, numbers, names = check_literals(case)
    for value, fold in texts:
        was, now = (before.casefold(), after.casefold()) if fold else (before, after)
        if (
            value
            and (value.casefold() if fold else value) in was
            and (value.casefold() if fold else value) not in now
        ):
            reasons.append(f"the prompt no longer contains {value!r}, which a check expects")
    before_numbers, after_numbers = _numbers(before), _numbers(after)
    for x in numbers:
        if x == int(x) and x >= 0 and before_numbers[int(x)] and not after_numbers[int(x)]:
            reasons.append(f"the prompt no longer contains {int(x)}, which a check expects")
    # Locale perturbations rewrite how numbers look on purpose, keeping their values.
    if kind != "locale" and before_numbers != after_numbers:
        reasons.append("numbers in the prompt changed (an arithmetic answer may differ)")
    dropped = edit.params.get("field")
    if dropped is not None and dropped in names:
        reasons.append(f"field {dropped!r}, which a check's schema names, is missing or empty")
    return list(dict.fromkeys(reasons))


# --- cases ---------------------------------------------------------------------------------


def _target(case: Case) -> tuple[str, int | None]:
    """The text a perturbation edits: the prompt, or the last user message (its index)."""
    if case.messages is None:
        assert case.prompt is not None
        return case.prompt, None
    users = [i for i, m in enumerate(case.messages) if m["role"] == "user"]
    if not users:
        raise LabError(f"{case.source}: case {case.id!r} has no user message to perturb")
    return case.messages[users[-1]]["content"], users[-1]


def variant_id(case_id: str, kind: str, variant: int) -> str:
    return f"{case_id}/{kind}-{variant}"


def perturb_case(
    case: Case,
    kind: str,
    variant: int,
    seed: int,
    options: PerturbOptions | None = None,
    source: str = "",
) -> Case | None:
    """One variant of a case (None when the family does not apply to it)."""
    options = options or PerturbOptions()
    text, index = _target(case)
    rng = variant_rng(seed, case.id, kind, variant)
    result = perturb_text(kind, text, rng, variant, options)
    if result is None:
        return None
    mode, edit = result
    reasons = answer_risks(case, kind, text, edit)
    record: dict[str, Any] = {
        "source_id": case.id,
        "source": source or case.source,
        "kind": kind,
        "mode": mode,
        "params": edit.params,
        "seed": seed,
        "variant": variant,
        "answer_may_change": bool(reasons),
    }
    if reasons:
        record["reasons"] = reasons
    if "perturbation" in case.metadata:  # a variant of a variant keeps its history
        record["previous"] = case.metadata["perturbation"]
    new = copy.deepcopy(case)
    new.id = variant_id(case.id, kind, variant)
    if index is None:
        new.prompt = edit.text
    else:
        assert new.messages is not None
        new.messages[index]["content"] = edit.text
    tags = ["perturbed", f"perturbed:{kind}"] + ([MAY_CHANGE_TAG] if reasons else [])
    new.tags = list(dict.fromkeys(case.tags + tags))
    new.metadata = case.metadata | {"perturbation": record}
    return new


@dataclass
class PerturbResult:
    variants: list[Case]
    #: kind -> cases the family did not apply to
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def flagged(self) -> int:
        return sum(MAY_CHANGE_TAG in c.tags for c in self.variants)


def perturb_cases(
    cases: list[Case],
    kinds: list[str],
    seed: int = 0,
    variants_per_case: int = 1,
    options: PerturbOptions | None = None,
    source: str = "",
) -> PerturbResult:
    """Every case x kind x variant (variants the family cannot make are counted as skipped)."""
    if variants_per_case < 1:
        raise LabError(f"--variants-per-case must be >= 1, got {variants_per_case}")
    result = PerturbResult([])
    for case in cases:
        for kind in kinds:
            for v in range(variants_per_case):
                new = perturb_case(case, kind, v, seed, options, source)
                if new is None:
                    result.skipped[kind] += 1
                else:
                    result.variants.append(new)
    return result
