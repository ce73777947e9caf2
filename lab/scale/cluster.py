"""Connecting to Ray: `--ray ADDRESS` is `local` (start a Ray instance in this process, on
loopback, dashboard off), `auto` (RAY_ADDRESS, else the cluster `ray start` left on this
machine) or `ray://host:port` / `host:port`.

    ray = connect("local")    # the `ray` module, initialized
    ...
    disconnect()
"""

from __future__ import annotations

import importlib.util
from typing import Any

from lab import settings
from lab.errors import LabError

#: the one-line answer to `--ray` where Ray is not installed
MISSING = "--ray needs Ray: install the extra with pip install 'determinism-lab[ray]'"


def require_ray() -> None:
    """LabError (one line, naming the extra) when Ray is not importable."""
    if importlib.util.find_spec("ray") is None:
        raise LabError(MISSING)


def connect(address: str, num_cpus: int | None = None) -> Any:
    """Initialize Ray for this driver and return the `ray` module."""
    require_ray()
    if address == "local":
        # Every address of a local instance on loopback: Ray otherwise binds and advertises
        # the machine's outward IP. Read when ray is imported, so set before.
        settings.set_env("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"logging_level": "warning", "log_to_driver": False}
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LabError(f"--ray {address}: cannot reach a Ray cluster ({first})") from exc
    return ray


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
