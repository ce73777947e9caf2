"""Parsing model replies into calls, answers or malformed calls: the lab's text protocol and
the native formats (Qwen/Hermes, Mistral, Llama 3.1, a server's parsed calls)."""

from __future__ import annotations

import pytest

from lab.agents.protocol import Protocol, example_arguments, parse_native, parse_text
from tests.unit.agent_fakes import tool


@pytest.mark.parametrize(
    ("text", "kind", "name", "arguments"),
    [
        ('CALL calculator {"expression": "2+3"}', "call", "calculator", {"expression": "2+3"}),
        ('Let me see.\nCALL add {"a": 1}\nUser: RESULT 1', "call", "add", {"a": 1}),
        ('call: kv_get {"key": "x"} thanks', "call", "kv_get", {"key": "x"}),
        ("CALL noargs", "call", "noargs", {}),
        # a full stop after the name is punctuation: the call goes to the tool
        ('CALL calc. {"expression": "1+1"}', "call", "calc", {"expression": "1+1"}),
        ("CALL calc.", "call", "calc", {}),
        ('CALL kv.get.. {"key": "x"}', "call", "kv.get", {"key": "x"}),
        ('CALL calculator {"expression": 2+3}', "malformed", None, None),
        ("CALL 12*5", "malformed", None, None),
        ("CALL add [1, 2]", "malformed", None, None),
        ("The answer is 42.", "answer", None, None),
    ],
)
def test_text_protocol(text: str, kind: str, name: str | None, arguments: object) -> None:
    parsed = parse_text(text)
    assert parsed.kind == kind
    if kind == "call":
        assert (parsed.calls[0].name, parsed.calls[0].arguments) == (name, arguments)
        assert parsed.content == text.split("\n")[0] if text.startswith("CALL") else True
    if kind == "malformed":
        assert parsed.reason


def test_text_answer_after_the_marker_and_history_cut_at_the_call() -> None:
    assert parse_text("Sure.\nANSWER: 391 apples").answer == "391 apples"
    parsed = parse_text('Thinking\nCALL add {"a": 1}\nUser: RESULT: 9\nAssistant: ANSWER: 9')
    assert parsed.content == 'Thinking\nCALL add {"a": 1}'


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ('<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>', [("add", {"a": 1})]),
        (
            '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
            '<tool_call>{"name": "b", "arguments": "{\\"x\\": 2}"}</tool_call>',
            [("a", {}), ("b", {"x": 2})],
        ),
        ('[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1}}]', [("add", {"a": 1})]),
        ('[TOOL_CALLS]add[ARGS]{"a": 1}', [("add", {"a": 1})]),
        ('<|python_tag|>{"name": "add", "parameters": {"a": 1}}', [("add", {"a": 1})]),
        ('{"name": "add", "parameters": {"a": 1}}', [("add", {"a": 1})]),
    ],
)
def test_native_formats(text: str, calls: list[tuple[str, object]]) -> None:
    parsed = parse_native(text)
    assert parsed.kind == "call"
    assert [(c.name, c.arguments) for c in parsed.calls] == calls


def test_native_malformed_answer_and_server_calls() -> None:
    assert parse_native("<tool_call>{broken</tool_call>").kind == "malformed"
    assert parse_native("[TOOL_CALLS] nope").kind == "malformed"
    assert parse_native('{"not": "a call"}').kind == "answer"
    assert parse_native("Paris.").answer == "Paris."
    server = [{"id": "x", "type": "function", "function": {"name": "add", "arguments": '{"a": 3}'}}]
    parsed = parse_native("", server)
    assert [(c.name, c.arguments) for c in parsed.calls] == [("add", {"a": 3})]
    bad = [{"function": {"name": "add", "arguments": "{nope"}}]
    assert parse_native("", bad).kind == "malformed"


def test_history_messages_of_both_protocols() -> None:
    tools = [tool("add", a="number")]
    text = Protocol("text")
    opening = text.initial_messages([{"role": "user", "content": "q"}], tools)
    assert [m["role"] for m in opening] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert opening[2]["content"] == 'CALL add {"a": 2}'
    with_system = text.initial_messages(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}], tools
    )
    assert with_system[0]["content"].startswith("Be brief.\n\nYou can use tools.")
    native = Protocol("native")
    assert native.initial_messages([{"role": "user", "content": "q"}], tools) == [
        {"role": "user", "content": "q"}
    ]
    parsed = parse_native('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    message = native.assistant_message(parsed, 2)
    assert message["tool_calls"][0]["id"] == "c002n0000"
    assert (
        Protocol("native", wire=True).assistant_message(parsed, 2)["tool_calls"][0]["function"][
            "arguments"
        ]
        == '{"a": 1}'
    )
    assert native.result_messages(parsed, [({"x": 1}, None)], 2)[0]["content"] == '{"x": 1}'


def test_example_arguments_come_from_the_schema() -> None:
    t = tool("convert", value="number", unit="string")
    t["function"]["parameters"]["properties"]["unit"]["examples"] = ["km"]
    assert example_arguments(t) == {"value": 2, "unit": "km"}
