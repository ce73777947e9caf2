"""Worst-case inputs: perturb each case the way production text arrives, deterministically.

The edits themselves are lab.longtail.textedits (typos, truncation, mojibake, locale, noise,
fields, paraphrase: pure functions of text and a seeded numpy Generator); here they are grouped
into families (FAMILIES) and applied to cases.

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
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.cases.checks import Contains, Exact, JSONCheck, Normalized, Numeric, OneOf
from lab.cases.model import Case
from lab.errors import LabError
from lab.longtail.textedits import (
    Edit,
    case_noise,
    double_encoded,
    drop_field,
    drop_trailing_field,
    foreign_sentence,
    locale_dates,
    locale_digits,
    locale_numbers,
    paraphrase,
    punctuation_noise,
    truncate_chars,
    truncate_tokens,
    typos,
    whitespace_noise,
)

MAY_CHANGE_TAG = "answer-may-change"


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
