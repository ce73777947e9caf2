"""Turn requests into prompt token ids, the same way for every backend.

Both backends receive token ids rendered here (chat template for messages, plain encoding for
raw prompts), so a difference between engines can never come from tokenization.
"""

from __future__ import annotations

from typing import Any

from lab.backends.base import Request
from lab.errors import LabError


def supports_tools(tokenizer: Any) -> bool:
    """Whether the model's chat template renders tool definitions (Qwen, Llama 3.1+, Mistral
    do; SmolLM2's does not): it names `tools` somewhere (a dict of templates: any of them)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(str(t) for t in template.values())
    return isinstance(template, str) and "tools" in template


def render_token_ids(tokenizer: Any, request: Request) -> list[int]:
    """Prompt token ids for one request (with its tools through the chat template, if any)."""
    if request.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise LabError(
                f"request {request.id!r} has chat messages but the model has no chat template; "
                "give a raw prompt instead"
            )
        extra = {"tools": request.tools} if request.tools else {}
        ids = tokenizer.apply_chat_template(
            request.messages, add_generation_prompt=True, tokenize=True, return_dict=False,
            **extra,
        )  # fmt: skip
        # Some tokenizer versions return a BatchEncoding / dict even with return_dict=False.
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return [int(t) for t in ids]
    assert request.prompt is not None
    return [int(t) for t in tokenizer.encode(request.prompt, add_special_tokens=True)]


def chat(request_id: str, user_text: str, system: str | None = None) -> Request:
    """A one-turn chat request."""
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": user_text})
    return Request(id=request_id, messages=messages)


class TokenTexts:
    """Decoded text of single tokens, cached (top-k alternatives repeat the same ids a lot)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self._cache.get(token_id)
        if text is None:
            text = str(self.tokenizer.decode([token_id]))
            self._cache[token_id] = text
        return text
