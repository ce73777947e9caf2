"""Agent stepping benchmark: all live trajectories in one engine call per turn (what `lab
sample` does with agent cases) against each trajectory stepped alone, one engine call per
trajectory per turn, on the same engine in one run. Ratio = alone wall time / batched wall
time (issue 16's target: at least 5x at 10 cases x k=8 on an engine that batches).

Both passes use the same seeds and tools; whether they produced the same trajectories is
reported beside the ratio (hf pads a batch, so its logprobs can move; sampled tokens rarely do).

    lab bench agents [--backend hf|vllm] [--num-cases 10] [--k 8] [--max-tokens 32] [--max-turns 3]
"""

from __future__ import annotations

import time
from typing import Any

from lab.agents.environment import Environments
from lab.agents.runner import choose_protocol
from lab.agents.trajectory import Live, Stepper, Task, advance
from lab.backends import Backend, load_backend
from lab.backends.base import SamplingConfig
from lab.cases.loaders import load_cases
from lab.variance.config import SampleConfig


def _pass(
    backend: Any, cases: list[Any], k: int, sampling: SamplingConfig, max_turns: int, alone: bool
) -> tuple[dict[str, Any], list[list[str]]]:
    protocol = choose_protocol("auto", backend)
    stepper = Stepper(backend, sampling, k, protocol, Environments(cases), 0, max_turns)
    lives: list[Live] = [
        stepper.start(Task(case, j, i)) for j, case in enumerate(cases) for i in range(k)
    ]
    started = time.perf_counter()
    advance(stepper, lives, group_size=1 if alone else None)
    wall = time.perf_counter() - started
    steps = [s for live in lives for s in live.steps]
    result = {
        "wall_s": wall,
        "engine_calls": stepper.calls,
        "steps": len(steps),
        "output_tokens": sum(len(s.output_token_ids) for s in steps),
        "protocol": protocol.name,
    }
    return result, [[s.text for s in live.steps] for live in lives]


def bench_agents(
    backend: str = "hf",
    cases: int = 10,
    k: int = 8,
    max_tokens: int = 32,
    max_turns: int = 3,
    cache_dir: str | None = None,
    engine: Backend | None = None,
) -> dict[str, Any]:
    """`engine`: an already running backend (tests pass a fake); else one is loaded."""
    if engine is None:
        # the engine `lab sample` runs agent cases on (vLLM: prefix caching, 32-token KV blocks)
        config = SampleConfig(backend=backend, device="cpu", dtype="fp32").engine_config()
        engine = load_backend(config, cache_dir)
    chosen = load_cases("bundled:agents")[:cases]
    sampling = SamplingConfig(n=1, temperature=0.7, max_tokens=max_tokens)
    # warm-up: one short call so neither pass pays the first call's one-off costs
    _pass(engine, chosen[:1], 1, SamplingConfig(n=1, temperature=0.7, max_tokens=4), 1, False)
    batched, texts_b = _pass(engine, chosen, k, sampling, max_turns, alone=False)
    alone, texts_a = _pass(engine, chosen, k, sampling, max_turns, alone=True)
    return {
        "backend": backend,
        "cases": len(chosen),
        "k": k,
        "max_tokens": max_tokens,
        "max_turns": max_turns,
        "batched": batched,
        "alone": alone,
        "ratio": alone["wall_s"] / batched["wall_s"] if batched["wall_s"] else float("nan"),
        "same_trajectories": sum(a == b for a, b in zip(texts_a, texts_b, strict=True)),
        "trajectories": len(texts_a),
    }


def format_agents(result: dict[str, Any]) -> str:
    b, a = result["batched"], result["alone"]
    return (
        f"agent stepping ({result['backend']}, {result['cases']} cases x k={result['k']}, "
        f"max_tokens {result['max_tokens']}, max_turns {result['max_turns']}, "
        f"{b['protocol']} protocol):\n"
        f"  batched: {b['wall_s']:.2f} s, {b['engine_calls']} engine calls, {b['steps']} steps, "
        f"{b['output_tokens'] / b['wall_s']:.1f} output tok/s\n"
        f"  alone:   {a['wall_s']:.2f} s, {a['engine_calls']} engine calls, {a['steps']} steps, "
        f"{a['output_tokens'] / a['wall_s']:.1f} output tok/s\n"
        f"  ratio (alone / batched wall time): {result['ratio']:.2f}x; "
        f"{result['same_trajectories']}/{result['trajectories']} trajectories identical "
        "in both passes"
    )
