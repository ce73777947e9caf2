"""One answer normalization (lab.cases.checks.normalize_answer) for the checks, the majority
answers and a sweep's TARa / accuracy (lab.determinism.metrics.parse_answer): both callers
agree on the inputs where the two former rules differed, and numbers keep their sign and
decimal point (SQuAD alone made -3 equal 3).

    .venv/bin/python -m pytest -q tests/unit/test_answer_normalization.py
"""

from __future__ import annotations

import pytest

from lab.cases.checks import normalize_answer
from lab.cases.specs import parse_check
from lab.determinism.metrics import parse_answer, tar

#: (two outputs, whether they are one answer)
PAIRS = [
    (("Paris", "paris"), True),  # case
    (("  New   York\n", "new york"), True),  # whitespace
    (("42.", "42"), True),  # trailing punctuation
    (("Yes!", "yes"), True),
    (("The answer: 42", "answer 42"), True),  # articles, punctuation around words
    (("1,234", "1234"), True),  # thousands separators
    (("1,234,567.5", "1234567.5"), True),
    (("-3", "3"), False),  # a sign is part of the number
    (("3.14", "314"), False),  # so is a decimal point
    (("0.5", ".5"), False),
    (("42", "24"), False),
]


@pytest.mark.parametrize("pair, same", PAIRS)
def test_checks_and_sweeps_agree_on_what_one_answer_is(pair: tuple[str, str], same: bool) -> None:
    a, b = pair
    # a sweep without answer_regex: the whole text; TARa of the two outputs
    assert (parse_answer(a, None) == parse_answer(b, None)) is same
    assert tar([[parse_answer(a, None), parse_answer(b, None)]]) == (1.0 if same else 0.0)
    # the `normalized` check: b as the expected value, a as the output
    check = parse_check({"normalized": b})
    assert check.run(a).passed is same
    assert check.run(a).answer == parse_answer(a, None) == normalize_answer(a)


def test_a_sweeps_regex_answer_is_normalized_the_same_way() -> None:
    regex = r"(-?\d+(?:,\d{3})*)(?!.*\d)"
    assert parse_answer("So the total is 1,234.", regex) == parse_answer("1234", regex) == "1234"
    assert parse_answer("It is -7.", regex) == "-7" != parse_answer("It is 7.", regex)
    assert parse_answer("no number here", regex) is None


def test_one_of_labels_use_the_same_rule() -> None:
    check = parse_check({"one_of": ["3.14", "314"], "answer": "3.14"})
    assert check.run("Pi is about 3.14.").passed
    # negative control: 314 is another label (SQuAD alone read both labels as "314")
    result = check.run("Pi is about 314.")
    assert not result.passed and result.answer == "314"
