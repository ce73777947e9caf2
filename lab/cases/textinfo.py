"""What a case's input looks like: its text, language, script, token count and structured fields.

Shared by the distribution-shift checklist (lab/longtail/shift.py) and the cohort buckets
(lab/cases/cohorts.py), so both describe an input the same way.

    case_text(case)            the user-visible input: prompt, or the messages' contents joined
    languages(texts)           [(ISO 639-1 code, probability)] from langid.py (norm_probs);
                               "und" (undetermined) below MIN_LANGUAGE_PROB
    dominant_script(text)      Unicode script of most letters (LATIN, CJK, CYRILLIC, ...),
                               from unicodedata character names; "NONE" without letters
    script_mix(text)           every script of its letters, "+"-joined (LATIN+CJK): a mostly
                               English prompt with a Chinese term is mixed, not LATIN
    TokenCounter(model)        token counts from a model's tokenizer (the bundled SmolLM2 when
                               prepared), else whitespace tokens; `.kind` says which
    structured_fields(case)    {field: value} from metadata keys and the top-level keys of a
                               JSON object in the prompt ("json.KEY")

langid.py (Lui & Baldwin 2012) is a naive Bayes classifier over byte n-grams trained on 97
languages; on a few words it is unsure, which is why low-probability answers become "und".
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Any

from lab.cases.model import Case
from lab.models import DEFAULT_MODEL

#: below this normalized langid probability the language is reported as "und"
MIN_LANGUAGE_PROB = 0.5
UNDETERMINED = "und"


def case_text(case: Case) -> str:
    """The input a user typed: the prompt, or every message's content (system included)."""
    if case.messages is not None:
        return "\n".join(m["content"] for m in case.messages)
    return case.prompt or ""


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from langid.langid import LanguageIdentifier, model

    # norm_probs: a probability in [0, 1] instead of an unnormalized log score.
    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


def languages(texts: list[str]) -> list[tuple[str, float]]:
    """langid's language and probability per text; "und" when unsure or without letters."""
    ident = _identifier()
    out = []
    for text in texts:
        if not any(ch.isalpha() for ch in text):
            out.append((UNDETERMINED, 0.0))
            continue
        lang, prob = ident.classify(text)
        out.append((str(lang) if prob >= MIN_LANGUAGE_PROB else UNDETERMINED, float(prob)))
    return out


def char_script(ch: str) -> str | None:
    """The script of one letter from its Unicode name ("LATIN SMALL LETTER A" -> LATIN)."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if not name:
        return "UNKNOWN"
    first = name.split()[0]
    # Han ideographs are named "CJK UNIFIED IDEOGRAPH-4E2D"; kana and hangul keep their own.
    return "CJK" if first == "CJK" else first


def dominant_script(text: str) -> str:
    """The script most letters of the text are written in; NONE without letters."""
    counts = Counter(s for s in map(char_script, text) if s is not None)
    return counts.most_common(1)[0][0] if counts else "NONE"


def script_mix(text: str) -> str:
    """The scripts of the text's letters, sorted and "+"-joined; NONE without letters."""
    scripts = {s for s in map(char_script, text) if s is not None}
    return "+".join(sorted(scripts)) if scripts else "NONE"


class TokenCounter:
    """Counts tokens with a model's tokenizer, or whitespace-separated words without one.

    `model`: a bundled model name, checkpoint directory or hub id (lab.models.resolve, never
    preparing or downloading), or "whitespace". `kind` names what was used.
    """

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        self.tokenizer: Any = None
        self.kind = "whitespace"
        if model != "whitespace":
            self.tokenizer = _load_tokenizer(model)
            if self.tokenizer is not None:
                self.kind = f"tokenizer:{model}"

    def count(self, texts: list[str]) -> list[int]:
        if self.tokenizer is None:
            return [len(t.split()) for t in texts]
        # One batched call; no special tokens (BOS/EOS) so counts are the text's own.
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]


def _load_tokenizer(model: str) -> Any:
    from lab.errors import LabError
    from lab.models import resolve

    try:
        path = resolve(model, prepare=False)
    except LabError:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path))
    except Exception:  # noqa: BLE001 - a checkpoint without a usable tokenizer: fall back
        return None


def json_object_in(text: str) -> dict[str, Any] | None:
    """The JSON object a prompt carries: the whole text, or its outermost {...} span."""
    stripped = text.strip()
    candidates = [stripped]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


def structured_fields(case: Case) -> dict[str, Any]:
    """Metadata fields and, for a prompt carrying a JSON object, its keys as "json.KEY"."""
    fields = {f"metadata.{k}": v for k, v in case.metadata.items()}
    obj = json_object_in(case_text(case))
    if obj is not None:
        fields |= {f"json.{k}": v for k, v in obj.items()}
    return fields


def is_empty(value: Any) -> bool:
    """Missing-equivalent values: None, blank text, empty list or mapping."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | dict | tuple):
        return len(value) == 0
    return False
