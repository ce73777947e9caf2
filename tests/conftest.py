"""Shared fixtures: one running engine per backend, reused across tests (vLLM starts in ~10-20 s).

Model tests use the real bundled SmolLM2-135M-Instruct on the CPU in fp32.
"""

from __future__ import annotations

from collections.abc import Iterator

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


@pytest.fixture(params=["hf", "vllm"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each real backend in turn (tests using it run once per engine)."""
    name = request.param
    if name == "vllm":
        request.applymarker(pytest.mark.vllm)
    return request.getfixturevalue(f"{name}_backend")
