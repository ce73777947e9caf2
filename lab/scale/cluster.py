"""Connecting to Ray: `--ray ADDRESS` is `local` (start a Ray instance in this process, on
loopback, dashboard off), `auto` (RAY_ADDRESS, else the cluster `ray start` left on this
machine) or `ray://host:port` / `host:port`.

    ray = connect("local")    # the `ray` module, initialized
    ...
    disconnect()
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from lab import settings
from lab.errors import LabError

#: the one-line answer to `--ray` where Ray is not installed
MISSING = "--ray needs Ray: install the extra with pip install 'determinism-lab[ray]'"


def require_ray() -> None:
    """LabError (one line, naming the extra) when Ray is not importable."""
    if importlib.util.find_spec("ray") is None:
        raise LabError(MISSING)


#: what `--ray` takes: local, auto, ray://HOST[:PORT] (Ray Client) or HOST:PORT (a GCS)
ADDRESS = re.compile(r"(local|auto|ray://[^\s/:]+(:\d+)?|[^\s/:]+:\d+)")


def check_address(address: str) -> None:
    """LabError (one line) for a `--ray` value that is no cluster address: checked before
    anything is written (`lab sample --ray CONFIG.yaml` took the file for an address)."""
    if not ADDRESS.fullmatch(address):
        raise LabError(
            f"--ray {address}: not a cluster address (local, auto, ray://HOST:PORT or "
            "HOST:PORT); --ray takes an optional value, so put it after a config file: "
            "lab sweep CONFIG.yaml --ray"
        )


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
