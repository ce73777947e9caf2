"""How tool calls travel between a model and its tools: the model's own chat template with
tools, or the lab's text protocol for models whose template has none.

`native`: the tools go to `apply_chat_template(tools=...)` (Qwen, Llama 3.1+, Mistral) or to a
server's `tools` field; the model answers in its own format, and `parse_native` reads the
formats those families use: `<tool_call>{"name", "arguments"}</tool_call>` (Qwen / Hermes, any
number), `[TOOL_CALLS] [{"name", "arguments"}, ...]` or `[TOOL_CALLS]name[ARGS]{...}` (Mistral),
`<|python_tag|>{...}` or a bare `{"name", "parameters"}` object (Llama 3.1), or the calls a
server's tool parser returned. Calls go back into the history as an assistant message with
`tool_calls` and each result as a `tool` message, which the template renders.

`text` (documented in the README): the tools are rendered into the system prompt, with one
worked exchange as chat turns (a 135M model follows a shown exchange, rarely a description):

    CALL <tool name> <arguments as one JSON object>     one line: a call (the rest is ignored)
    RESULT: <the tool's answer>                         the next user turn
    ANSWER: <the final answer>                          no CALL line: the final answer

A full stop right after the tool name is punctuation (`CALL calc. {...}` calls `calc`).
A reply whose CALL line does not parse (no JSON object, bad JSON, a bad name) is `malformed`:
a recorded step, answered with an error message so the model can try again. A reply without a
CALL line is the final answer (the text after `ANSWER:` when present, else the whole reply).

    parsed = TEXT.parse('CALL calculator {"expression": "2+3"}')
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from lab.cases.agentspec import canonical_json

PROTOCOLS = ("auto", "native", "text")
_CALL_LINE = re.compile(r"^\s*CALL\b[:\s]*(.*)$", re.IGNORECASE)
_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)\s*(.*)$", re.DOTALL)
_ANSWER = re.compile(r"\bANSWER\s*:\s*", re.IGNORECASE)
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_MISTRAL = "[TOOL_CALLS]"
_LLAMA = "<|python_tag|>"


@dataclass
class ParsedCall:
    """One tool call the model made (arguments as parsed JSON; any JSON value)."""

    name: str
    arguments: Any
    id: str = ""


@dataclass
class Parsed:
    """What one model reply is: calls, a final answer, or a malformed call."""

    #: "call" | "answer" | "malformed"
    kind: str
    calls: list[ParsedCall] = field(default_factory=list)
    answer: str | None = None
    #: why a call did not parse (malformed only)
    reason: str | None = None
    #: the assistant text kept in the history (text before a call, the answer, ...)
    content: str = ""


def call_id(turn: int, index: int) -> str:
    """A deterministic call id, nine letters and digits (Mistral's templates require that):
    the same history renders to the same tokens in every run."""
    return f"c{turn:03d}n{index:04d}"[-9:]


def result_text(result: Any) -> str:
    """A tool's answer as the model reads it: text as is, anything else as JSON."""
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def _json_prefix(text: str) -> tuple[Any, str | None]:
    """The JSON value at the start of `text` (trailing text ignored), or (None, why not)."""
    text = text.strip()
    if not text:
        return None, "no arguments"
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        return None, f"arguments are not JSON ({exc.msg} at column {exc.colno})"
    return value, None


# --- the text protocol -----------------------------------------------------------------------


def _example_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "text"
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    if "default" in schema:
        return schema["default"]
    return {"number": 2, "integer": 2, "boolean": True, "array": [], "object": {}}.get(
        str(schema.get("type")), "text"
    )


def example_arguments(tool: dict[str, Any]) -> dict[str, Any]:
    """Arguments for the worked exchange: the schema's first `examples` entry when it has one,
    else each required property's example, default, first enum value or a placeholder."""
    params = tool["function"].get("parameters") or {}
    if isinstance(params.get("examples"), list) and params["examples"]:
        first = params["examples"][0]
        if isinstance(first, dict):
            return first
    props = params.get("properties") or {}
    names = params.get("required") or list(props)
    return {name: _example_value(props.get(name)) for name in names}


def describe_tool(tool: dict[str, Any]) -> str:
    fn = tool["function"]
    props = (fn.get("parameters") or {}).get("properties") or {}
    args = ", ".join(f'"{name}": {spec.get("type", "any")}' for name, spec in props.items())
    return f"- {fn['name']} {{{args}}}: {fn.get('description', '')}".rstrip(": ")


def text_system_prompt(tools: list[dict[str, Any]]) -> str:
    lines = [
        "You can use tools. To use a tool, reply with one line and nothing else:",
        "CALL tool_name {JSON arguments}",
        "The result comes back as RESULT. When you know the answer, reply: ANSWER: the answer",
        "",
        "Tools:",
    ]
    return "\n".join(lines + [describe_tool(t) for t in tools])


def text_example_turns(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One worked exchange with the first tool: a call, its result, an answer."""
    tool = tools[0]
    name = tool["function"]["name"]
    args = json.dumps(example_arguments(tool), ensure_ascii=False)
    return [
        {"role": "user", "content": f"Example: use {name}."},
        {"role": "assistant", "content": f"CALL {name} {args}"},
        {"role": "user", "content": "RESULT: done"},
        {"role": "assistant", "content": "ANSWER: done"},
    ]


def parse_text(text: str) -> Parsed:
    """One reply under the text protocol (module docstring)."""
    lines = text.split("\n")
    for number, line in enumerate(lines):
        match = _CALL_LINE.match(line)
        if match is None:
            continue
        content = "\n".join(lines[: number + 1]).strip()
        named = _NAME.match(match.group(1).strip())
        if named is None:
            return Parsed("malformed", reason="CALL without a tool name", content=content)
        rest = named.group(2).strip()
        arguments, error = ({}, None) if not rest else _json_prefix(rest)
        if error is not None:
            return Parsed("malformed", reason=error, content=content)
        if not isinstance(arguments, dict):
            reason = "arguments must be one JSON object"
            return Parsed("malformed", reason=reason, content=content)
        # `CALL calc. {...}`: a full stop after the name is punctuation, not part of the name
        name = named.group(1).rstrip(".")
        return Parsed("call", [ParsedCall(name, arguments)], content=content)
    answer = text.strip()
    found = _ANSWER.search(answer)
    if found is not None:
        answer = answer[found.end() :].strip()
    return Parsed("answer", answer=answer, content=text.strip())


# --- native formats --------------------------------------------------------------------------


def _call_object(value: Any) -> tuple[ParsedCall | None, str | None]:
    """{"name", "arguments" | "parameters"} (arguments possibly JSON text) -> a call."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None, "a call needs a JSON object with a 'name'"
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        arguments, error = _json_prefix(arguments) if arguments.strip() else ({}, None)
        if error is not None:
            return None, error
    return ParsedCall(value["name"], arguments), None


def _calls_from(values: list[Any]) -> tuple[list[ParsedCall], str | None]:
    calls = []
    for value in values:
        call, error = _call_object(value)
        if call is None:
            return [], error
        calls.append(call)
    return calls, None


def parse_native(text: str, server_calls: list[dict[str, Any]] | None = None) -> Parsed:
    """One reply under the model's own tool format (module docstring); `server_calls`: what a
    server's tool parser returned (OpenAI shape), which wins when given."""
    if server_calls:
        values = [c.get("function", c) if isinstance(c, dict) else c for c in server_calls]
        calls, error = _calls_from(values)
        if error is not None:
            return Parsed("malformed", reason=error, content=text.strip())
        return Parsed("call", calls, content=text.strip())
    blocks = _HERMES.findall(text)
    if blocks:
        content = _HERMES.sub("", text).strip()
        values = []
        for block in blocks:
            value, error = _json_prefix(block)
            if error is not None:
                return Parsed("malformed", reason=f"<tool_call>: {error}", content=content)
            values.append(value)
        calls, error = _calls_from(values)
        kind = "malformed" if error is not None else "call"
        return Parsed(kind, calls, reason=error, content=content)
    for marker in (_MISTRAL, _LLAMA):
        if marker in text:
            head, _, tail = text.partition(marker)
            return _parse_after_marker(marker, tail, head.strip())
    stripped = text.strip()
    if stripped.startswith("{"):  # Llama 3.1's bare JSON call
        value, error = _json_prefix(stripped)
        if (
            error is None
            and isinstance(value, dict)
            and "name" in value
            and ("parameters" in value or "arguments" in value)
        ):
            call, why = _call_object(value)
            if call is not None:
                return Parsed("call", [call])
            return Parsed("malformed", reason=why)
    return Parsed("answer", answer=stripped, content=stripped)


def _parse_after_marker(marker: str, tail: str, head: str) -> Parsed:
    tail = tail.strip()
    if marker == _MISTRAL and not tail.startswith(("[", "{")):
        # [TOOL_CALLS]name[ARGS]{...}[TOOL_CALLS]name2[ARGS]{...}
        calls = []
        for part in tail.split(_MISTRAL):
            name, sep, args = part.partition("[ARGS]")
            if not sep:
                return Parsed("malformed", reason=f"{marker} without [ARGS]", content=head)
            value, error = _json_prefix(args)
            if error is not None:
                return Parsed("malformed", reason=error, content=head)
            calls.append(ParsedCall(name.strip(), value))
        return Parsed("call", calls, content=head)
    value, error = _json_prefix(tail)
    if error is not None:
        return Parsed("malformed", reason=f"{marker}: {error}", content=head)
    calls, error = _calls_from(value if isinstance(value, list) else [value])
    kind = "malformed" if error is not None else "call"
    return Parsed(kind, calls, reason=error, content=head)


# --- the history either protocol writes --------------------------------------------------------


@dataclass
class Protocol:
    """One protocol's rendering of an agent history (see the module docstring)."""

    name: str
    #: native calls go to a server (OpenAI wire format: arguments as JSON text); local chat
    #: templates get them as objects (Llama 3.1's template encodes them itself)
    wire: bool = False

    def initial_messages(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The case's opening messages, with the tools rendered in (text protocol)."""
        if self.name != "text":
            return [dict(m) for m in messages]
        prompt = text_system_prompt(tools)
        head = [dict(m) for m in messages]
        if head and head[0]["role"] == "system":
            system = {"role": "system", "content": f"{head[0]['content']}\n\n{prompt}"}
            head = head[1:]
        else:
            system = {"role": "system", "content": prompt}
        return [system, *text_example_turns(tools), *head]

    def request_tools(self, tools: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """The tools the chat template (or server) gets: none under the text protocol."""
        return tools if self.name == "native" else None

    def parse(self, text: str, server_calls: list[dict[str, Any]] | None = None) -> Parsed:
        return parse_native(text, server_calls) if self.name == "native" else parse_text(text)

    def assistant_message(self, parsed: Parsed, turn: int) -> dict[str, Any]:
        if self.name == "native" and parsed.kind == "call":
            calls = [
                {
                    "id": call_id(turn, j),
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": json.dumps(c.arguments) if self.wire else c.arguments,
                    },
                }
                for j, c in enumerate(parsed.calls)
            ]
            return {"role": "assistant", "content": parsed.content, "tool_calls": calls}
        return {"role": "assistant", "content": parsed.content}

    def result_messages(
        self, parsed: Parsed, answers: list[tuple[Any, str | None]], turn: int
    ) -> list[dict[str, Any]]:
        """The tools' answers (result, error) as the next messages."""
        texts = [
            f"error: {error}" if error is not None else result_text(result)
            for result, error in answers
        ]
        if self.name == "native":
            return [
                {"role": "tool", "tool_call_id": call_id(turn, j), "name": c.name, "content": t}
                for j, (c, t) in enumerate(zip(parsed.calls, texts, strict=True))
            ]
        return [{"role": "user", "content": "RESULT: " + "\nRESULT: ".join(texts)}]

    def malformed_messages(self, parsed: Parsed) -> list[dict[str, Any]]:
        """What the model reads after a call that did not parse."""
        if self.name == "native":
            text = f"Your tool call could not be parsed ({parsed.reason}). Try again."
        else:
            text = (
                f"RESULT: error: the CALL line could not be parsed ({parsed.reason}). "
                'Write CALL tool_name {"argument": value}'
            )
        return [{"role": "user", "content": text}]


def action_of(kind: str, calls: list[ParsedCall] | list[dict[str, Any]]) -> str:
    """A step as an action: `name{args}` per call (canonical JSON, `; ` between calls),
    `answer`, `malformed` or `error`."""
    if kind != "call":
        return kind
    parts = []
    for c in calls:
        name, args = (c["name"], c["arguments"]) if isinstance(c, dict) else (c.name, c.arguments)
        parts.append(f"{name}{canonical_json(args)}")
    return "; ".join(parts)
