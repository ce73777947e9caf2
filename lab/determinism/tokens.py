"""The token-level view of a sweep's divergent prompts, for the HTML report.

Each prompt whose output changed in some cell is one line of the reference's output tokens,
each token coloured by the reference's top-1/top-2 logprob gap at that step (red under 0.01
nats, orange under 0.1, yellow under 0.5; its exact gap, logprob and the runner-up in the
tooltip). The token where a cell first diverged is outlined, and under the line each divergent
cell continues side by side with the reference from that point. A reader sees at once whether
the flip happened at a near tie (a red or orange token) or somewhere the model was sure.

All model text is escaped (html.escape, quotes included for the tooltips); line breaks in a
token show as a visible mark so the line stays one line.

    views = token_views(config, entries, decode_token)   # lab.report.sweep_report builds them
    html = render_token_views(views)                     # inside the sweep report's <body>
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from lab.backends.base import Generation
from lab.determinism.divergence import compare
from lab.determinism.fragility import step_gaps
from lab.determinism.fragility_sources import sweep_reference
from lab.safetext import inline

if TYPE_CHECKING:
    from lab.determinism.config import SweepConfig

#: (upper bound on the gap in nats, class) from the closest tie up
GAP_CLASSES = ((0.01, "tie"), (0.1, "near"), (0.5, "close"))
#: CSS for the classes above; the sweep report puts it in its <style>
TOKEN_CSS = (
    ".toks{font-family:monospace;white-space:pre-wrap;line-height:1.9;margin:.3em 0}"
    ".toks span{border-radius:3px;padding:1px 0}"
    ".tie{background:#f28b82}.near{background:#fbbc74}.close{background:#fde293}"
    ".flip{outline:2px solid #1a237e;outline-offset:1px}"
    ".legend span{padding:0 .4em;margin-right:.4em;font-family:monospace}"
)
#: at most this many prompts, cells per prompt, and tokens of a continuation are shown
MAX_PROMPTS = 20
MAX_CELLS = 4
CONTINUATION_TOKENS = 24
MAX_PATH_TOKENS = 400


@dataclass
class Token:
    text: str
    #: the reference's top-1 minus top-2 logprob at this step (None: not kept)
    gap: float | None
    logprob: float | None
    #: the runner-up token's text at this step (None: not kept)
    runner_up: str | None = None


@dataclass
class CellDivergence:
    #: the cells whose output continues this way (the same divergence point and tokens)
    cells: list[str]
    #: the first output token index where their output differs
    index: int
    #: the texts of the reference's and their tokens from there on
    reference: list[str]
    other: list[str]


@dataclass
class TokenView:
    prompt: str
    tokens: list[Token]
    divergences: list[CellDivergence] = field(default_factory=list)
    #: distinct divergent continuations beyond MAX_CELLS, not shown
    more: int = 0


def token_texts(generation: Generation, decode_token: Callable[[int], str] | None) -> list[str]:
    """The text of each output token: the stored alternative's text when the chosen token is
    among them, else the tokenizer's, else the id."""
    out = []
    for i, token_id in enumerate(generation.output_token_ids):
        alternatives = generation.top_logprobs[i] if i < len(generation.top_logprobs) else []
        text = next((a.token for a in alternatives if a.token_id == token_id), None)
        if text is None:
            text = decode_token(token_id) if decode_token is not None else f"<{token_id}>"
        out.append(text)
    return out


def token_views(
    config: SweepConfig,
    entries: list[dict[str, Any]],
    decode_token: Callable[[int], str] | None = None,
) -> list[TokenView]:
    """One view per target whose output differs from the reference's in some ok cell."""
    _, records, others, _ = sweep_reference(config, entries)
    views = []
    for tid, reference in records.items():
        divergent = []
        for label, other in others.get(tid, []):
            d = compare(reference, other)
            if d.first_divergence is not None:
                divergent.append((label, other, d.first_divergence))
        if not divergent:
            continue
        divergent.sort(key=lambda item: item[2])
        texts = token_texts(reference, decode_token)
        gaps = step_gaps(reference)
        tokens = []
        for i, text in enumerate(texts[:MAX_PATH_TOKENS]):
            alternatives = reference.top_logprobs[i] if i < len(reference.top_logprobs) else []
            tokens.append(
                Token(
                    text=text,
                    gap=gaps[i] if i < len(gaps) else None,
                    logprob=(
                        reference.token_logprobs[i] if i < len(reference.token_logprobs) else None
                    ),
                    runner_up=alternatives[1].token if len(alternatives) > 1 else None,
                )
            )
        # cells that diverge at the same token into the same continuation: one entry
        groups: dict[tuple[int, tuple[int, ...]], CellDivergence] = {}
        for label, other, index in divergent:
            key = (index, tuple(other.output_token_ids[index : index + CONTINUATION_TOKENS]))
            if key in groups:
                groups[key].cells.append(label)
                continue
            other_texts = token_texts(other, decode_token)
            groups[key] = CellDivergence(
                [label],
                index,
                texts[index : index + CONTINUATION_TOKENS],
                other_texts[index : index + CONTINUATION_TOKENS],
            )
        shown = list(groups.values())
        views.append(TokenView(tid, tokens, shown[:MAX_CELLS], max(0, len(shown) - MAX_CELLS)))
        if len(views) >= MAX_PROMPTS:
            break
    return views


def _visible(text: str) -> str:
    """A token's text on one line: line breaks and tabs shown as marks."""
    return text.replace("\r", "\u240d").replace("\n", "\u23ce").replace("\t", "\u21e5")


def gap_class(gap: float | None) -> str:
    if gap is None:
        return ""
    return next((name for bound, name in GAP_CLASSES if gap < bound), "")


def _token_span(index: int, token: Token, flips: set[int]) -> str:
    classes = " ".join(c for c in (gap_class(token.gap), "flip" if index in flips else "") if c)
    gap = "-" if token.gap is None else f"{token.gap:.4g}"
    logprob = "-" if token.logprob is None else f"{token.logprob:.4g}"
    title = f"step {index}: gap {gap} nats, logprob {logprob}"
    if token.runner_up is not None:
        title += f", runner-up {token.runner_up!r}"
    attrs = f' class="{classes}"' if classes else ""
    return (
        f'<span{attrs} title="{escape(_visible(title), quote=True)}">'
        f"{escape(_visible(token.text))}</span>"
    )


def render_token_views(views: list[TokenView]) -> str:
    """The report section (empty when nothing diverged)."""
    if not views:
        return ""
    legend = "".join(
        f'<span class="{name}">gap &lt; {bound:g}</span>' for bound, name in GAP_CLASSES
    )
    parts = [
        "<h2>Divergent prompts, token by token</h2>",
        "<p>The reference's output, each token coloured by the reference's top-1/top-2 logprob "
        "gap at that step (hover for the gap, the logprob and the runner-up); the outlined "
        "token is where a cell first chose differently. A flip at a red or orange token "
        f"happened at a near tie.</p><p class='legend'>{legend}"
        "<span class='flip'>first divergence</span></p>",
    ]
    for view in views:
        flips = {d.index for d in view.divergences}
        line = "".join(_token_span(i, t, flips) for i, t in enumerate(view.tokens))
        parts.append(f"<p><b>{inline(view.prompt)}</b></p><div class='toks'>{line}</div>")
        for d in view.divergences:
            gap = view.tokens[d.index].gap if d.index < len(view.tokens) else None
            at = "-" if gap is None else f"{gap:.4g}"
            cells = "; ".join(d.cells)
            many = f" ({len(d.cells)} cells)" if len(d.cells) > 1 else ""
            parts.append(
                f"<p><small><i>{inline(cells)}</i>{many} diverge{'' if many else 's'} at token "
                f"{d.index} "
                f"(reference gap there {escape(at)} nats)</small></p><div class='side'>"
                f"<pre>reference: {escape(_visible(''.join(d.reference)))}</pre>"
                f"<pre>other: {escape(_visible(''.join(d.other)))}</pre></div>"
            )
        if view.more:
            parts.append(
                f"<p><small>... and {view.more} more divergent continuation(s)</small></p>"
            )
    return "".join(parts)
