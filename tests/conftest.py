"""Shared fixtures: one running engine per backend, reused across tests (vLLM starts in ~10-20 s).

Model tests use the real bundled SmolLM2-135M-Instruct on the CPU in fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.backends import Backend, EngineConfig, close_all, load_backend
from lab.backends.prompts import chat

FRANCE = chat("france", "What is the capital of France? Answer in one word.")
FEYNMAN = chat("feynman", "Tell me about Richard Feynman.")


# Function-scoped on purpose: load_backend returns the running engine when it is already up
# (free), and starts it again when an in-process test (a sweep, the quickstart) replaced it
# with another configuration or closed it. A session-scoped object would go stale then.
@pytest.fixture
def hf_backend() -> Backend:
    return load_backend(EngineConfig(backend="hf", device="cpu", dtype="fp32"))


@pytest.fixture
def vllm_backend() -> Backend:
    return load_backend(EngineConfig(backend="vllm", device="cpu", dtype="fp32"))


@pytest.fixture(scope="session", autouse=True)
def _close_engines() -> Iterator[None]:
    yield
    close_all()


#: where the lab's commands put a run by default (relative to the working directory)
DEFAULT_RUNS = Path(__file__).resolve().parents[1] / "runs"


@pytest.fixture(scope="session", autouse=True)
def _no_run_left_in_the_checkout() -> Iterator[None]:
    """A test writes its runs under tmp_path: one that used a default --out (runs/... in the
    checkout) fails the session here, naming what it left."""
    before = set(DEFAULT_RUNS.iterdir()) if DEFAULT_RUNS.is_dir() else set()
    yield
    after = set(DEFAULT_RUNS.iterdir()) if DEFAULT_RUNS.is_dir() else set()
    left = sorted(p.name for p in after - before)
    assert not left, f"tests left run directories in {DEFAULT_RUNS}: {left}"


@pytest.fixture(params=["hf", "vllm"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each real backend in turn (tests using it run once per engine)."""
    name = request.param
    if name == "vllm":
        request.applymarker(pytest.mark.vllm)
    return request.getfixturevalue(f"{name}_backend")
