"""The backends by name: the names a config or `--backend` accepts, and the class behind each,
imported only when that backend is asked for (so `import lab` needs no engine stack).

    hf       transformers in this process (lab/backends/hf.py)
    vllm     vLLM's offline engine in this process (lab/backends/vllm.py)
    openai   any OpenAI-compatible server, or a managed vLLM server (lab/backends/openai_compat.py)

    from lab.backends import registry
    click.Choice(registry.choices(default="vllm"))      # ["vllm", "hf"]
    cls = registry.backend_class("hf")                  # imports lab.backends.hf now
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from lab.errors import ConfigError


@dataclass(frozen=True)
class BackendInfo:
    name: str
    #: "module:Class" of the Backend subclass
    target: str
    #: an engine inside this process (sampling and sweeps take these); else a server's client
    in_process: bool
    #: the constructor takes `log_dir`, where a server it starts writes its log
    runs_server: bool = False


BACKENDS: dict[str, BackendInfo] = {
    "hf": BackendInfo("hf", "lab.backends.hf:HFBackend", in_process=True),
    "vllm": BackendInfo("vllm", "lab.backends.vllm:VLLMBackend", in_process=True),
    "openai": BackendInfo(
        "openai", "lab.backends.openai_compat:OpenAIBackend", in_process=False, runs_server=True
    ),
}
#: every backend name, in the order help texts list them
NAMES: tuple[str, ...] = tuple(BACKENDS)
#: the engines that run in this process (sweeps run any backend; lab sample takes these
#: and openai; lab demo and lab bench take these)
ENGINES: tuple[str, ...] = tuple(n for n, b in BACKENDS.items() if b.in_process)


def choices(default: str | None = None, names: tuple[str, ...] = ENGINES) -> list[str]:
    """Names for a click.Choice: the default first, then the others in registry order."""
    return ([default] if default in names else []) + [n for n in names if n != default]


def check_name(name: str) -> None:
    """ConfigError for a name no backend has."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; use {', '.join(NAMES[:-1])} or {NAMES[-1]}")


def preflight(config: Any, cache_dir: str | None = None) -> None:
    """The refusals a backend makes before its engine starts (its module's `preflight`, where
    it has one: vLLM's device, dtype, tensor-parallel and batch-invariant checks), made before
    a command writes anything. `config`: an EngineConfig."""
    check_name(config.backend)
    module = importlib.import_module(BACKENDS[config.backend].target.partition(":")[0])
    check = getattr(module, "preflight", None)
    if check is not None:
        check(config, cache_dir)


def backend_class(name: str) -> Any:
    """The Backend subclass of `name`, importing its module (and engine stack) now."""
    check_name(name)
    module, _, cls = BACKENDS[name].target.partition(":")
    return getattr(importlib.import_module(module), cls)
