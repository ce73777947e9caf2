"""Every check type: passes, failures with their reasons, extracted answers, bad specs."""

from __future__ import annotations

import pytest

from lab.cases.checks import CheckResult, PythonCheck, extract_numbers
from lab.cases.codechecks import CodePolicy, resolve_checks
from lab.cases.model import Case
from lab.cases.specs import CheckSpecError, parse_check
from lab.errors import LabError


def run(spec: dict, output: str) -> CheckResult:  # type: ignore[type-arg]
    check = parse_check(spec)
    if isinstance(check, PythonCheck):  # the commands resolve python checks before running
        case = Case(id="t", checks=[check])
        resolve_checks([case], CodePolicy.from_settings(["operator"]))
    return check.run(output)


def test_exact_strips_whitespace_only() -> None:
    assert run({"exact": "Paris"}, "  Paris\n").passed
    r = run({"exact": "Paris"}, "paris")
    assert not r.passed and "got 'paris'" in r.reason
    assert run({"type": "exact", "value": ["Paris", "Paris."]}, "Paris.").passed


def test_normalized_exact() -> None:
    assert run({"normalized": "the Eiffel Tower"}, "Eiffel tower!").passed
    assert run({"normalized_exact": "yes"}, "Yes.").passed
    r = run({"normalized": "yes"}, "Yes, sure.")
    assert not r.passed and "yes sure" in r.reason


def test_contains_modes_case_and_negation() -> None:
    assert run({"contains": "paris"}, "The capital is Paris.").passed
    assert not run({"contains": "paris", "ignore_case": False}, "Paris").passed
    r = run({"contains": ["red", "blue"]}, "red and green")
    assert not r.passed and r.reason == "missing 'blue'"
    assert run({"contains": ["red", "blue"], "mode": "any"}, "red and green").passed
    r = run({"contains": "sorry", "negate": True}, "Sorry, I cannot.")
    assert not r.passed and "contains 'sorry'" in r.reason
    assert run({"contains": 12}, "it is 12").passed  # YAML numbers are text here


def test_regex_search_fullmatch_and_group_answer() -> None:
    r = run({"regex": r"(\d+) apples"}, "I have 3 apples")
    assert r.passed and r.answer == "3"
    assert not run({"regex": r"\d+", "fullmatch": True}, "12 apples").passed
    r = run({"regex": r"^\d+$"}, "twelve")
    assert not r.passed and "no match" in r.reason
    assert run({"regex": "e", "negate": True}, "sky").passed


def test_numeric_extraction_pick_and_tolerance() -> None:
    assert extract_numbers("7 + 5 = 12; 1,234.5 and -3, .5, Q3") == [7, 5, 12, 1234.5, -3, 0.5]
    r = run({"numeric": 12}, "7 + 5 = 12.")
    assert r.passed and r.answer == "12"
    r = run({"numeric": 12}, "The answer is 12, not 13")  # last number by default
    assert not r.passed and r.reason == "13 != 12"
    assert run({"numeric": 12, "pick": "first"}, "12, not 13").passed
    assert run({"numeric": 12, "pick": "any"}, "11 or 12 or 13").passed
    r = run({"numeric": 3, "pick": "only"}, "3 or 4")
    assert not r.passed and "2 numbers" in r.reason
    assert run({"numeric": 3.14, "tolerance": 0.01}, "pi is 3.1416").passed
    assert run({"numeric": 1000, "rel_tolerance": 0.01}, "about 1,005").passed
    r = run({"numeric": 7}, "seven")
    assert not r.passed and r.reason == "no number in the output"


def test_one_of_labels() -> None:
    spec = {"one_of": ["positive", "negative"], "answer": "positive"}
    r = run(spec, "Positive.")
    assert r.passed and r.answer == "positive"
    r = run(spec, "The sentiment is negative.")
    assert not r.passed and "expected 'positive'" in r.reason and r.answer == "negative"
    r = run(spec, "It is neither.")
    assert not r.passed and r.reason.startswith("no label")
    r = run(spec, "positive or negative")
    assert not r.passed and "ambiguous" in r.reason
    spam = {"one_of": ["spam", "not spam"], "answer": "spam"}
    assert run(spam, "spam").passed
    assert run(spam, "This is not spam.").answer == "not spam"  # longest label wins
    assert run({"one_of": ["yes", "no"]}, "no").passed  # no answer: any label passes


def test_json_parse_and_schema() -> None:
    schema = {"type": "object", "required": ["age"], "properties": {"age": {"const": 34}}}
    r = run({"json": True, "schema": schema}, 'Here you go:\n```json\n{"age": 34}\n```')
    assert r.passed and r.answer == '{"age": 34}'
    r = run({"json": True, "schema": schema}, 'Sure! {"age": "34"} hope it helps')
    assert not r.passed and r.reason.startswith("schema: age:")
    r = run({"json": True, "schema": schema}, '{"name": "x"}')
    assert not r.passed and "'age' is a required property" in r.reason
    r = run({"json": True}, '{"age": 34')
    assert not r.passed and r.reason.startswith("invalid JSON")
    r = run({"json": True}, "no braces at all")
    assert not r.passed and r.reason.startswith("invalid JSON")
    assert run({"type": "json"}, "[1, 2]").passed


def test_python_callable() -> None:
    spec = {"python": "lab.variance.examples:comma_list", "args": {"count": 3}}
    assert run(spec, "red, green, and blue").passed
    r = run(spec, "red, green")
    assert not r.passed and "2 comma-separated items" in r.reason
    r = run({"python": "lab.variance.examples:no_letter"}, "red")
    assert not r.passed and "uses 'e'" in r.reason
    # f(output, case) raising is a failure with its message: "text" / None -> TypeError
    r = run({"python": "operator:truediv"}, "text")
    assert not r.passed and r.reason.startswith("check raised TypeError")
    with pytest.raises(LabError, match="has no callable 'missing'"):
        run({"python": "lab.variance.examples:missing"}, "x")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"type": "nope"}, "type"),
        ({"contains": "x", "colour": 1}, "colour"),
        ({"regex": "("}, "pattern"),
        ({"numeric": "twelve"}, "value"),
        ({"numeric": 1, "pick": "middle"}, "pick"),
        ({"one_of": ["a", "b"], "answer": "c"}, "answer"),
        ({"json": True, "schema": {"type": 5}}, "schema"),
        ({"python": "no-colon"}, "function"),
        ({"python": "os.:system"}, "function"),
        ({"python": "os:sys tem"}, "function"),
        ({"python": "os:system", "args": [1]}, "args"),
        ({"contains": []}, "value"),
        ({"exact": "a", "contains": "b"}, "type"),
    ],
)
def test_bad_specs_name_the_field(spec: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(CheckSpecError) as info:
        parse_check(spec)
    assert info.value.field == field
