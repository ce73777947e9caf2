"""Perturbations: golden outputs on fixed inputs and seeds, mojibake round trips, the marking of
variants whose expected answer may change, and `lab perturb` end to end (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lab.cases.loaders import load_cases
from lab.cases.model import Case, case_from_record
from lab.cli import cli
from lab.longtail import perturb as P
from lab.longtail import textedits as T

TEXT = "What is the capital of France? Answer in one word."


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def case(record: dict[str, object]) -> Case:
    return case_from_record(record, True, "test")


# --- golden outputs: each family, fixed input, fixed seed -------------------------------------


def test_typos_golden() -> None:
    edit = T.typos(TEXT, rng(0), rate=0.1)
    assert edit is not None
    assert edit.text == "Whf is the caial of Frqnce? Answer in one word."
    assert edit.params == {"rate": 0.1, "edits": {"drop": 3, "substitute": 2}}
    # A low rate still makes one typo (a variant equal to its source would be useless).
    one = T.typos("abc", rng(1), rate=0.0)
    assert one is not None and one.text != "abc" and sum(one.params["edits"].values()) == 1
    assert T.typos("?! ...", rng(0)) is None


def test_typo_substitutions_are_qwerty_neighbours() -> None:
    assert set(T.QWERTY_NEIGHBOURS["g"]) == set("fhtybv")
    assert set(T.QWERTY_NEIGHBOURS["q"]) == set("wa12")
    for seed in range(20):
        edit = T.typos("g", rng(seed), rate=1.0)
        assert edit is not None
        if edit.params["edits"] == {"substitute": 1}:
            assert edit.text in "fhtybv"  # letters stay letters


def test_truncation_golden() -> None:
    chars = T.truncate_chars(TEXT, rng(0), keep=0.5)
    assert chars.text == "What is the capital of Fr"
    assert chars.may_change is not None and "'ance? Answer in one word.'" in chars.may_change
    words = T.truncate_tokens(TEXT, rng(0), keep=0.5)
    assert words is not None and words.text == "What is the capital of"
    assert words.params == {
        "mode": "tokens",
        "unit": "whitespace",
        "keep": 0.5,
        "tokens": 5,
        "of": 10,
    }
    # Whole trailing sentences after a complete question: the answer stands, no mark.
    kept = T.truncate_tokens("What is 12 * 7?  Reply with the number only.", rng(0), keep=0.5)
    assert kept is not None and kept.text == "What is 12 * 7?" and kept.may_change is None


class _CharTokenizer:
    """Stands in for a model tokenizer (one token per character) to show it is used."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


def test_truncation_by_tokenizer_tokens() -> None:
    edit = T.truncate_tokens("abcdefghij", rng(0), keep=0.3, tokenizer=_CharTokenizer())
    assert edit is not None and edit.text == "abc"
    assert edit.params["unit"] == "tokenizer" and edit.params["of"] == 10


def test_trailing_field_golden() -> None:
    edit = T.drop_trailing_field("name: Ada\ncity: London\nage: 36", rng(0))
    assert edit is not None and edit.text == "name: Ada\ncity: London\n"
    assert edit.params == {"mode": "field", "field": "age"}
    obj = T.drop_trailing_field('Use {"a": 1, "b": "x"} now', rng(0))
    assert obj is not None and obj.text == 'Use {"a": 1} now'
    assert T.drop_trailing_field("Question: no record here", rng(0)) is None


def test_mojibake_golden() -> None:
    text = 'It\'s a "test" - really...'
    cp = T.double_encoded(text, rng(0), codec="cp1252")
    assert cp is not None
    assert cp.text == "Itâ€™s a â€œtestâ€\x9dÂ\xa0â€“Â\xa0reallyâ€¦"
    latin = T.double_encoded(text, rng(0), codec="latin-1")
    assert latin is not None
    assert latin.text == "Itâ\x80\x99s a â\x80\x9ctestâ\x80\x9dÂ\xa0â\x80\x93Â\xa0reallyâ\x80¦"
    assert T.mojibake("café") == "cafÃ©"
    assert T.mojibake("café", rounds=2) == "cafÃƒÂ©"


@pytest.mark.parametrize("codec", ["cp1252", "latin-1"])
@pytest.mark.parametrize("rounds", [1, 2, 3])
def test_mojibake_round_trips(codec: str, rounds: int) -> None:
    # Every byte value 0x80-0xFF shows up in these, including cp1252's undefined 0x81/0x9D.
    texts = ["café – naïve “x” it’s… ÿ", "😀 Ω ß \x81\x9d", "ascii only", "日本語のテキスト"]
    texts.append("".join(chr(c) for c in range(0x80, 0x800)))
    for text in texts:
        garbled = T.mojibake(text, codec, rounds)
        assert T.unmojibake(garbled, codec, rounds) == text
    # The family's output goes back to the typographic text it garbled.
    edit = T.double_encoded(TEXT, rng(3), codec=codec, rounds=rounds)
    assert edit is not None
    assert T.unmojibake(edit.text, codec, rounds) == T.typographic(TEXT, rng(3))


def test_unmojibake_refuses_text_that_is_not_mojibake() -> None:
    with pytest.raises(ValueError, match="not cp1252 mojibake"):
        T.unmojibake("naïve")  # "ï" then "v" is not a UTF-8 sequence


def test_locale_golden() -> None:
    assert T.foreign_sentence(TEXT, rng(0), "ar").text == f"{TEXT} من فضلك أجب باختصار."
    digits = T.locale_digits("What is 12 + 30 on 2026-11-27?", rng(0), "devanagari")
    assert digits is not None and digits.text == "What is १२ + ३० on २०२६-११-२७?"
    arabic = T.locale_digits("What is 12 + 30?", rng(0), "arabic-indic")
    assert arabic is not None and arabic.text == "What is ١٢ + ٣٠?"
    assert T.locale_digits("no digits", rng(0)) is None
    text = "Add 1234.5 and 2500000 to 7."
    expect = {
        "de": "Add 1.234,5 and 2.500.000 to 7.",
        "fr": "Add 1\u202f234,5 and 2\u202f500\u202f000 to 7.",
        "ch": "Add 1'234.5 and 2'500'000 to 7.",
        "en-IN": "Add 1,234.5 and 25,00,000 to 7.",
    }
    for style, want in expect.items():
        edit = T.locale_numbers(text, rng(0), style)
        assert edit is not None and edit.text == want
    assert T.locale_numbers("Add 12 and 7.", rng(0)) is None  # nothing to regroup
    dates = {"dmy-slash": "27/11/2026", "dmy-dot": "27.11.2026", "ymd-jp": "2026年11月27日"}
    for style, want in dates.items():
        edit = T.locale_dates("The meeting is on 2026-11-27.", rng(0), style)
        assert edit is not None and edit.text == f"The meeting is on {want}."


def test_noise_golden() -> None:
    ws = T.whitespace_noise(TEXT, rng(0))
    assert ws.text == "  What is the  capital of France? Answer in one word. \n"
    punct = T.punctuation_noise(TEXT, rng(0))
    assert punct.text == "What is the capital of France? Answer in one word"
    assert T.punctuation_noise("no marks", rng(0)).text == "no marks??"
    upper = T.case_noise(TEXT, rng(0), "upper")
    assert upper is not None and upper.text == TEXT.upper()
    flips = T.case_noise(TEXT, rng(0), "random")
    assert flips is not None and flips.text == "WHAT is the cApItaL OF France? ANswer in one wOrD."
    assert T.case_noise("123", rng(0), "upper") is None


def test_fields_golden() -> None:
    text = 'Summarize: {"name": "Ada", "city": "London"}'
    missing = T.drop_field(text, rng(0), "missing")
    assert missing is not None and missing.text == 'Summarize: {"name": "Ada"}'
    empty = T.drop_field(text, rng(0), "empty")
    assert empty is not None and empty.text == 'Summarize: {"name": "Ada", "city": ""}'
    lines = T.drop_field("name: Ada\ncity: London\nWhat city?", rng(1), "missing")
    assert lines is not None and lines.text == "city: London\nWhat city?"
    assert T.drop_field(TEXT, rng(0)) is None  # one "Key: value" line is prose


def test_paraphrase_golden() -> None:
    assert T.paraphrase(TEXT, rng(0), 0).text == f"Question: {TEXT}\nAnswer:"
    assert T.paraphrase(TEXT, rng(0), 4).text == "hey, quick one: w" + TEXT[1:]
    drawn = T.paraphrase(TEXT, rng(0))
    assert drawn.params == {"template": 6}
    assert drawn.text == f"My teacher asked me this and I am not sure. {TEXT}"


# --- cases: links, marks, determinism ----------------------------------------------------------


def test_variants_link_to_source_and_keep_checks() -> None:
    source = case(
        {"id": "cap", "prompt": TEXT, "checks": [{"contains": "Paris"}], "tags": ["facts"]}
    )
    result = P.perturb_cases([source], ["typos", "paraphrase"], seed=7, variants_per_case=2)
    assert [c.id for c in result.variants] == [
        "cap/typos-0",
        "cap/typos-1",
        "cap/paraphrase-0",
        "cap/paraphrase-1",
    ]
    for variant in result.variants:
        assert [c.spec for c in variant.checks] == [c.spec for c in source.checks]
        meta = variant.metadata["perturbation"]
        assert meta["source_id"] == "cap" and meta["seed"] == 7
        assert meta["kind"] in variant.id and "params" in meta
        assert {"facts", "perturbed", f"perturbed:{meta['kind']}"} <= set(variant.tags)
        assert variant.prompt != TEXT
    assert source.prompt == TEXT and source.tags == ["facts"]  # the source is untouched


def test_variants_are_deterministic_and_independent_of_the_other_kinds() -> None:
    cases = load_cases("bundled:basic")[:10]
    a = P.perturb_cases(cases, list(P.KINDS), seed=3, variants_per_case=2)
    b = P.perturb_cases(cases, list(P.KINDS), seed=3, variants_per_case=2)
    assert [c.to_dict() for c in a.variants] == [c.to_dict() for c in b.variants]
    only = P.perturb_cases(cases[::-1], ["noise"], seed=3, variants_per_case=2)
    by_id = {c.id: c.to_dict() for c in a.variants}
    assert all(by_id[c.id] == c.to_dict() for c in only.variants)
    other = P.perturb_cases(cases, ["typos"], seed=4)
    assert [c.prompt for c in other.variants] != [c.prompt for c in a.variants if "typos-0" in c.id]


def test_last_user_message_is_perturbed() -> None:
    source = case(
        {
            "id": "chat",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": TEXT},
            ],
            "checks": [{"contains": "Paris"}],
        }
    )
    variant = P.perturb_case(source, "paraphrase", 0, seed=0)
    assert variant is not None and variant.messages is not None
    assert [m["content"] for m in variant.messages[:3]] == ["Be brief.", "Hi", "Hello!"]
    assert TEXT in variant.messages[3]["content"] and variant.messages[3]["content"] != TEXT


def _marked(variant: Case | None) -> list[str]:
    assert variant is not None
    meta = variant.metadata["perturbation"]
    assert meta["answer_may_change"] == (P.MAY_CHANGE_TAG in variant.tags)
    return list(meta.get("reasons", []))


def test_a_changed_number_in_arithmetic_is_marked() -> None:
    arithmetic = case({"id": "m", "prompt": "What is 17 + 25?", "checks": [{"numeric": 42}]})
    # Find a seed whose typo hits a digit, and one whose typo does not.
    hit = miss = None
    for seed in range(50):
        v = P.perturb_case(arithmetic, "typos", 0, seed)
        assert v is not None and v.prompt is not None
        if "17" in v.prompt and "25" in v.prompt:
            miss = miss or v
        else:
            hit = hit or v
    assert hit is not None and miss is not None
    assert any("numbers in the prompt changed" in r for r in _marked(hit))
    assert _marked(miss) == []
    # Non-ASCII digits keep the values: the answer stands.
    digits = P.perturb_case(arithmetic, "locale", 1, seed=0)
    assert digits is not None and digits.metadata["perturbation"]["mode"] == "digits"
    assert _marked(digits) == []


def test_a_dropped_field_a_check_needs_is_marked() -> None:
    record = 'Extract the city as JSON {"city": ...} from: {"name": "Ada", "city": "London"}'
    needs_city = case(
        {
            "id": "x",
            "prompt": record,
            "checks": [{"json": True, "schema": {"required": ["city"]}}],
        }
    )
    reasons = []
    for seed in range(30):
        v = P.perturb_case(needs_city, "fields", 0, seed)
        if v is not None and v.metadata["perturbation"]["params"]["field"] == "city":
            reasons = _marked(v)
            break
    assert any("field 'city'" in r for r in reasons)
    cut = P.perturb_case(needs_city, "truncation", 2, seed=0)  # mode 3 of 3: the trailing field
    assert cut is not None and cut.metadata["perturbation"]["mode"] == "field"
    assert any("trailing field 'city'" in r for r in _marked(cut))


def test_a_removed_expected_value_is_marked() -> None:
    def repeat(ignore_case: bool) -> Case:
        check = {"contains": "The quick brown fox", "ignore_case": ignore_case}
        return case(
            {"id": "r", "prompt": "Repeat exactly: The quick brown fox.", "checks": [check]}
        )

    for seed in range(10):
        noisy = P.perturb_case(repeat(False), "noise", 2, seed)  # variant 2: case noise
        assert noisy is not None and noisy.metadata["perturbation"]["mode"] == "case"
        assert any("'The quick brown fox'" in r for r in _marked(noisy))
        # A case-insensitive check still finds the text: no mark.
        assert _marked(P.perturb_case(repeat(True), "noise", 2, seed)) == []
    assert _marked(P.perturb_case(repeat(False), "paraphrase", 0, seed=0)) == []


def test_unknown_kind_is_an_error() -> None:
    from lab.errors import LabError

    with pytest.raises(LabError, match="unknown perturbation"):
        P.parse_kinds("typos,spelling")
    assert P.parse_kinds(None) == list(P.KINDS)


# --- the command ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix,kinds,variants,message",
    [
        # fields do not apply to the bundled prompts (no JSON objects or key: value records)
        (".jsonl", list(P.KINDS), 2, "600 variants of 50 cases"),
        # YAML loads slowly in pure Python: the kinds whose text is hardest to round-trip
        (".yaml", ["mojibake", "locale"], 1, "100 variants of 50 cases"),
    ],
)
def test_perturb_command_writes_a_case_file_lab_sample_loads(
    tmp_path: Path, suffix: str, kinds: list[str], variants: int, message: str
) -> None:
    out = tmp_path / f"variants{suffix}"
    args = ["perturb", "bundled:basic", "--out", str(out), "--seed", "1"]
    args += ["--variants-per-case", str(variants), "--kinds", ",".join(kinds)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert message in result.output
    loaded = load_cases(out)
    basic = load_cases("bundled:basic")
    by_id = {c.id: c for c in basic}
    for variant in loaded:
        meta = variant.metadata["perturbation"]
        assert [c.spec for c in variant.checks] == [c.spec for c in by_id[meta["source_id"]].checks]
    # Mojibake and locale text survive the file (U+0085 etc. stay inside one JSONL line).
    again = P.perturb_cases(basic, kinds, 1, variants, source="bundled:basic")
    assert [c.to_dict() for c in loaded] == [c.to_dict() for c in again.variants]


def test_jsonl_keeps_line_separator_characters_inside_one_line(tmp_path: Path) -> None:
    from lab.longtail.library import write_case_file

    prompt = "a\u2028b\u0085c\u2029d"
    path = write_case_file(
        tmp_path / "odd.jsonl", [{"id": "x", "prompt": prompt, "checks": [{"contains": "a"}]}]
    )
    assert len(path.read_text().split("\n")) == 2  # one case line + the final newline
    assert json.loads(path.read_text().split("\n")[0])["prompt"] == prompt
    assert load_cases(path)[0].prompt == prompt


def test_perturb_command_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["perturb", "bundled:basic", "--out", "x.txt"])
    assert bad.exit_code != 0 and "write cases as .jsonl or .yaml" in str(bad.exception)
    kinds = runner.invoke(cli, ["perturb", "bundled:basic", "--out", "x.jsonl", "--kinds", "zz"])
    assert "unknown perturbation" in str(kinds.exception)
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    flagged_only = runner.invoke(
        cli,
        ["perturb", "bundled:basic", "--out", str(out), "--kinds", "truncation", "--keep", "0.3"]
        + ["--drop-flagged"],
    )
    # every 30% cut is marked, so nothing is left: an error, and the old file is untouched
    assert "no variant could be made" in str(flagged_only.exception)
    assert out.read_text() == "precious\n"
    assert not list(tmp_path.glob(".*tmp*"))
