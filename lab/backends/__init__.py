"""Generation backends behind one interface (base.py), loaded on demand.

`load_backend(config)` imports an engine's stack only when that backend is asked for
(registry.py names the backends and their classes), so `import lab` works anywhere, and reuses
the running engine when the configuration is unchanged: changing batch size, seed or sampling
never restarts an engine. vLLM holds one engine per
process; asking for another configuration shuts the old one down first.
"""

from __future__ import annotations

import os

from lab.backends import registry
from lab.backends.base import Backend, EngineConfig, Generation, Request, SamplingConfig

__all__ = ["Backend", "EngineConfig", "Generation", "Request", "SamplingConfig", "load_backend"]

_running: dict[str, tuple[tuple[object, ...], Backend]] = {}


def load_backend(
    config: EngineConfig,
    cache_dir: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
) -> Backend:
    """The running backend for this configuration, started if needed. `log_dir`: where a server
    the backend starts (openai without a base_url) writes its log (None: a temp dir)."""
    key = config.key() + (("cache_dir", cache_dir),)
    current = _running.get(config.backend)
    if current is not None and current[0] == key:
        return current[1]
    if current is not None:
        current[1].close()
        del _running[config.backend]
    cls = registry.backend_class(config.backend)  # imports that engine's stack only now
    if registry.BACKENDS[config.backend].runs_server:
        backend: Backend = cls(config, cache_dir, log_dir=log_dir)
    else:
        backend = cls(config, cache_dir)
    _running[config.backend] = (key, backend)
    return backend


def close_all() -> None:
    """Shut down every running engine."""
    for _, backend in list(_running.values()):
        backend.close()
    _running.clear()
