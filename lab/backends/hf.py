"""Hugging Face transformers backend: batched generation with full token-level detail.

Our own decode loop instead of `model.generate`, because the science needs things generate does
not give: one explicit `torch.Generator` per sample (reproducible sampling under a seed, no
global RNG), the logprobs of the distribution actually sampled from, and n samples that share
one prefill (the KV cache is expanded, not recomputed). Requests of one call with the same
prompt tokens share one prefill too (an agent run's k trajectories of a case all start from
the case's first prompt): the cache rows are gathered, not recomputed.

`dtype: layercast` stores the weights in bf16 and computes every layer in fp32
(lab/backends/layercast.py).

Pipeline per batch: `prefill` (left-padded prompts, attention mask, explicit position ids) ->
expand the cache n times -> `decode_step` until every row stops or hits its length limit.

    lab generate --backend hf --prompt "What is the capital of France?"
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from typing import Any

from lab import models
from lab.backends.base import (
    LAYERCAST,
    Backend,
    EngineConfig,
    Generation,
    Request,
    SamplingConfig,
    TopLogprob,
    context_overflow,
)
from lab.backends.prompts import TokenTexts, render_token_ids
from lab.devices import check_dtype_on_device, resolve_device, torch_dtype, torch_threads
from lab.errors import ConfigError


def draw_seed_if_needed(sampling: SamplingConfig) -> SamplingConfig:
    """Sampling without a seed still records one, so every sample can be regenerated."""
    if sampling.greedy or sampling.seed is not None:
        return sampling
    return dataclasses.replace(sampling, seed=secrets.randbelow(2**31))


def sample_rows(logprobs: Any, generators: list[Any]) -> Any:
    """One token per row of [R, V] logprobs, row r drawn with its own generator.

    Inverse-CDF sampling: one uniform per row from that row's generator, then one batched
    cumsum + searchsorted. A per-row torch.multinomial loop costs ~27 ms per step at 32 rows
    of a 49k vocabulary on a 2-core CPU; this costs ~1 ms. Each row depends only on its own
    generator and its own probabilities (cumsum is computed per row), so a sample drawn inside
    a batch is the sample drawn alone with the same seed. `right=True` never lands on a
    zero-probability token: its cumulative mass equals its predecessor's.
    """
    import torch

    probs = logprobs.exp()
    uniforms = torch.stack(
        [torch.rand((), generator=g, device=probs.device) for g in generators]
    ).to(probs.dtype)
    cdf = probs.cumsum(dim=-1)
    targets = (uniforms * cdf[:, -1]).unsqueeze(-1)
    picked = torch.searchsorted(cdf, targets, right=True)[:, 0]
    return picked.clamp(max=probs.shape[-1] - 1)


def process_logits(logits: Any, sampling: SamplingConfig) -> Any:
    """[R, V] fp32 logits -> logprobs of the distribution sampled from (temperature, top-k,
    top-p applied; masked tokens at -inf). Greedy: the raw log-softmax."""
    import torch

    if sampling.greedy:
        return torch.log_softmax(logits, dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]  # [R, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # [R, V] mass of strictly better tokens
        drop_sorted = mass_before > sampling.top_p  # the top token always survives
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def attention_implementation(
    model_config: Any, batch_invariant: bool, model: str = "model"
) -> str | None:
    """The transformers attention implementation a model must load with (None: leave it to
    transformers), or ConfigError when the batch-invariant mode cannot cover the model.

    The mode's attention is its aten::scaled_dot_product_attention override (lab.kernels.
    attention): it needs transformers' "sdpa" path (eager attention is plain matmuls and a
    softmax over the padded key axis, measured not padding-invariant). That path passes the
    mask (causal, padding, sliding window) to the override, but drops attention-logit soft-
    capping (Gemma 2) without a word, so soft-capped models run "eager" (where it is applied)
    and are refused by the mode rather than silently computing another model's attention."""
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else None
    softcap = getattr(text or model_config, "attn_logit_softcapping", None)
    if batch_invariant:
        if softcap:
            arch = ",".join(getattr(model_config, "architectures", None) or []) or "this model"
            raise ConfigError(
                f"{model}: {arch} soft-caps its attention scores (attn_logit_softcapping="
                f"{softcap}), which the batch-invariant attention (scaled_dot_product_attention) "
                "cannot do; run it without the batch-invariant mode"
            )
        return "sdpa"
    return "eager" if softcap else None


class HFBackend(Backend):
    """One transformers model on one device, in one dtype."""

    #: drop finished rows from the batch during decoding (False: keep them decoding padding,
    #: the older behaviour; scripts/bench_sampling.py compares the two)
    drop_finished_rows: bool = True

    def __init__(self, config: EngineConfig, cache_dir: str | None = None) -> None:
        super().__init__(config)
        if config.backend != "hf":
            raise ConfigError(f"HFBackend given a {config.backend!r} config")
        if config.tensor_parallel_size != 1:
            raise ConfigError(
                "tensor_parallel_size > 1 needs the vllm backend (transformers runs on one device)"
            )
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.device = resolve_device(config.device)
        check_dtype_on_device(config.dtype, self.device)
        #: batch_invariant: prefill and decode run inside lab.kernels' batch-invariant mode
        self.kernels: str | None = None
        if config.batch_invariant:
            from lab.kernels import kernel_name

            self.kernels = kernel_name(self.device)
        self.info = models.model_info(config.model, cache_dir)
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.info.path))
        #: transformers' attention implementation, when the lab must choose it (None: its own)
        self.attention = attention_implementation(
            AutoConfig.from_pretrained(str(self.info.path)), config.batch_invariant, config.model
        )
        chosen = {"attn_implementation": self.attention} if self.attention else {}
        # layercast: loaded in bf16 (its storage), then computed in fp32 (apply_layercast)
        load_dtype = "bfloat16" if config.dtype == LAYERCAST else config.dtype
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(self.info.path), dtype=torch_dtype(load_dtype), **chosen
            )
        except ValueError as exc:  # transformers: this architecture has no sdpa path
            if self.attention != "sdpa" or "scaled_dot_product_attention" not in str(exc):
                raise
            raise ConfigError(
                f"{config.model}: the batch-invariant mode needs transformers' sdpa attention, "
                f"which this architecture lacks ({str(exc).splitlines()[0]})"
            ) from exc
        if config.dtype == LAYERCAST:
            from lab.backends.layercast import apply_layercast

            apply_layercast(model)
        self.model: Any = model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        self.load_seconds = time.perf_counter() - started
        self.context_length = min(
            config.max_model_len or self.info.max_position_embeddings,
            self.info.max_position_embeddings,
        )
        self.eos_ids = self._eos_ids()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = next(iter(self.eos_ids))
        self.token_text = TokenTexts(self.tokenizer)
        self._torch = torch

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif gen_eos:
            ids.update(int(t) for t in gen_eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return ids

    # -- public API ------------------------------------------------------------------------

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        sampling = draw_seed_if_needed(sampling)
        results: dict[str, list[Generation]] = {}
        runnable: list[tuple[Request, list[int]]] = []
        for request in requests:
            ids = render_token_ids(self.tokenizer, request)
            overflow = context_overflow(request, ids, self.context_length, self.config, sampling)
            if overflow is not None:
                results[request.id] = overflow
            else:
                runnable.append((request, ids))
        # Pack requests so that each forward pass holds at most max_num_seqs rows (n per request).
        per_batch = max(1, self.config.max_num_seqs // sampling.n)
        for start in range(0, len(runnable), per_batch):
            chunk = runnable[start : start + per_batch]
            with torch_threads(self.config.num_threads):  # None: the process's own
                generated = self._generate_batch(chunk, sampling)
            for (request, _), gens in zip(chunk, generated, strict=True):
                results[request.id] = gens
        return [g for request in requests for g in results[request.id]]

    # -- pipeline stages -------------------------------------------------------------------

    def prefill(self, prompts: list[list[int]]) -> tuple[Any, Any, Any, Any]:
        """Left-padded prompts -> (last-position logits [B, V] fp32, cache, mask [B, T],
        next position ids [B, 1])."""
        torch = self._torch
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]; padding rows reuse position 0
        out = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True
        )
        logits = out.logits[:, -1, :].float()  # [B, V]
        return logits, out.past_key_values, mask, positions[:, -1:] + 1

    def decode_step(self, tokens: Any, cache: Any, mask: Any, positions: Any) -> tuple[Any, Any]:
        """One new token per row: tokens [R] -> (logits [R, V] fp32, mask [R, T+1])."""
        torch = self._torch
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        return out.logits[:, -1, :].float(), mask

    def _kernel_mode(self) -> Any:
        """The batch-invariant kernels for this device when the config asks for them."""
        if not self.kernels:
            return contextlib.nullcontext()
        from lab.kernels import set_batch_invariant_mode

        return set_batch_invariant_mode(device=self.device)

    def _generate_batch(
        self, chunk: list[tuple[Request, list[int]]], sampling: SamplingConfig
    ) -> list[list[Generation]]:
        torch = self._torch
        n = sampling.n
        rows = len(chunk) * n
        started = time.perf_counter()
        with self._kernel_mode(), torch.inference_mode():
            distinct: dict[tuple[int, ...], int] = {}  # prompt tokens -> its prefill row
            source = [distinct.setdefault(tuple(ids), len(distinct)) for _, ids in chunk]
            logits, cache, mask, positions = self.prefill([list(ids) for ids in distinct])
            if len(distinct) < len(chunk):  # repeated prompts: gather each request's n rows
                index = torch.tensor([row for row in source for _ in range(n)], device=self.device)
                logits = logits.index_select(0, index)
                cache.batch_select_indices(index)
                mask = mask.index_select(0, index)
                positions = positions.index_select(0, index)
            elif n > 1:  # one prefill per prompt, the cache expanded to n rows
                logits = logits.repeat_interleave(n, dim=0)
                cache.batch_repeat_interleave(n)
                mask = mask.repeat_interleave(n, dim=0)
                positions = positions.repeat_interleave(n, dim=0)
            prefill_seconds = time.perf_counter() - started
            row_seeds = [sampling.sample_seed(i, request) for request, _ in chunk for i in range(n)]
            generators = None
            if not sampling.greedy:
                generators = []
                for seed in row_seeds:
                    g = torch.Generator(device=self.device)
                    g.manual_seed(int(seed))  # type: ignore[arg-type]
                    generators.append(g)
            limits = [
                min(sampling.max_tokens, self.context_length - len(ids))
                for _, ids in chunk
                for _ in range(n)
            ]
            tokens_out: list[list[int]] = [[] for _ in range(rows)]
            chosen_lp: list[list[float]] = [[] for _ in range(rows)]
            top_ids: list[list[list[int]]] = [[] for _ in range(rows)]
            top_lps: list[list[list[float]]] = [[] for _ in range(rows)]
            finish = [""] * rows
            k = sampling.logprobs
            # active[b]: the row (index into the per-row lists above) that batch row b holds.
            # Finished rows are dropped from the batch (KV cache, mask, positions) once enough
            # of them accumulate, so one long sample does not keep k-1 finished ones decoding.
            active = list(range(rows))
            for step in range(max(limits)):
                logprobs = process_logits(logits, sampling)  # [A, V]
                if generators is None:
                    next_tokens = logprobs.argmax(dim=-1)  # [A]
                else:
                    next_tokens = sample_rows(logprobs, [generators[r] for r in active])
                chosen = logprobs.gather(-1, next_tokens[:, None])[:, 0]  # [A]
                next_list = next_tokens.tolist()
                chosen_list = chosen.tolist()
                if k:
                    top = torch.topk(logprobs, k, dim=-1)
                    step_ids, step_lps = top.indices.tolist(), top.values.tolist()
                for b, r in enumerate(active):
                    if finish[r]:
                        continue
                    tokens_out[r].append(next_list[b])
                    chosen_lp[r].append(chosen_list[b])
                    if k:
                        top_ids[r].append(step_ids[b])
                        top_lps[r].append(step_lps[b])
                    if next_list[b] in self.eos_ids:
                        finish[r] = "stop"
                    elif step + 1 >= limits[r]:
                        finish[r] = "length"
                if all(finish):
                    break
                # Rows finished but not yet dropped decode padding (the batch stays rectangular).
                feed = torch.tensor(
                    [self.pad_id if finish[r] else next_list[b] for b, r in enumerate(active)],
                    device=self.device,
                )
                keep = [b for b, r in enumerate(active) if not finish[r]]
                if self.drop_finished_rows and len(active) - len(keep) >= max(1, len(active) // 8):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    feed, mask, positions = feed[index], mask[index], positions[index]
                    active = [active[b] for b in keep]
                logits, mask = self.decode_step(feed, cache, mask, positions)
                positions = positions + 1
        total_seconds = time.perf_counter() - started
        engine = self.config.to_dict() | {"device": self.device}
        engine["batch_invariant_kernels"] = self.kernels or False  # as the vllm backend records
        engine["attn_implementation"] = getattr(self.model.config, "_attn_implementation", None)
        if self.config.dtype == LAYERCAST:
            from lab.backends.layercast import COMPUTE_DTYPE, WEIGHTS_DTYPE

            engine |= {"weights_dtype": WEIGHTS_DTYPE, "compute_dtype": COMPUTE_DTYPE}
        sampling_dict = dataclasses.asdict(sampling)
        out: list[list[Generation]] = []
        for req_index, (request, ids) in enumerate(chunk):
            gens = []
            for i in range(n):
                r = req_index * n + i
                gens.append(
                    Generation(
                        request_id=request.id,
                        sample_index=i,
                        seed=row_seeds[r],
                        backend="hf",
                        prompt_token_ids=list(ids),
                        output_token_ids=tokens_out[r],
                        token_logprobs=chosen_lp[r],
                        top_logprobs=[
                            [
                                TopLogprob(tid, lp, self.token_text(tid))
                                for tid, lp in zip(step_ids_r, step_lps_r, strict=True)
                                if lp != float("-inf")
                            ]
                            for step_ids_r, step_lps_r in zip(top_ids[r], top_lps[r], strict=True)
                        ],
                        text=str(self.tokenizer.decode(tokens_out[r], skip_special_tokens=True)),
                        finish_reason=finish[r],
                        timings={
                            "prefill_s": prefill_seconds,
                            "total_s": total_seconds,
                            "batch_rows": float(rows),
                        },
                        engine=engine,
                        sampling=sampling_dict,
                    )
                )
            out.append(gens)
        return out

    def close(self) -> None:
        self.model = None
        import gc

        gc.collect()
