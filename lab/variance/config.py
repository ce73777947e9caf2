"""The configuration of an n-of-k variance run (`lab sample`), from YAML and/or flags.

A YAML file holds the same keys as the fields below (flags override it), e.g.

    cases: bundled:basic
    k: 32
    backend: vllm
    tensor_parallel_size: 1      # vllm only (--tp)
    prefix_caching: true         # the engine, as a sweep cell has it (flags: lab sample --help)
    batch_invariant: false
    enforce_eager: true          # false: compiled (slow start on a CPU)
    attention_backend: null      # vLLM's choice
    engine_args: {max_num_batched_tokens: 8192}   # any other vLLM engine argument
    temperature: 0.7
    max_tokens: 64
    out: runs/basic-k32
    prices: {input: 0.10, output: 0.40}      # per million tokens
    gate: {min_mean: 0.5, min_p5: 0.1, max_mean_over_p5: 4, min_pass_hat_k: 0.1}

Only the fields that change samples (cases, engine, sampling, seeds) define the run's identity
in the run directory (the engine as `engine`: EngineConfig.from_values, the builder a sweep
cell and `lab generate` use too); analysis settings (gate, prices, diversity, bootstrap,
cohorts) can change when a report is rebuilt.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import rundir
from lab.backends import registry
from lab.backends.base import (
    EngineConfig,
    SamplingConfig,
    canonical_dtype,
    check_backend_supports,
)
from lab.cases.codechecks import CodePolicy
from lab.cases.cohorts import parse_cohorts
from lab.cases.model import Case
from lab.devices import check_device_name
from lab.errors import LabError
from lab.models import DEFAULT_MODEL
from lab.variance.diversity import DEFAULT_EMBEDDER, DEFAULT_THRESHOLD
from lab.yamlio import load_yaml_file


@dataclass
class GateConfig:
    """Launch thresholds; a run that falls short of any exits 1 with the reasons."""

    #: lowest acceptable mean success over cases (expected success rate)
    min_mean: float | None = None
    #: lowest acceptable 5th percentile of per-case success (worst-case users)
    min_p5: float | None = None
    #: highest acceptable mean / p5 (2 is the "high-variance feature" line)
    max_mean_over_p5: float | None = None
    #: lowest acceptable pass^k at the run's k (all k samples of a case pass)
    min_pass_hat_k: float | None = None
    #: highest acceptable share of consistent-wrong cases (the model agrees with itself and
    #: fails: lab.variance.decompose), in [0, 1]
    max_consistent_wrong: float | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in dataclasses.asdict(self).values())


GATE_ALIASES = {
    "mean": "min_mean",
    "p5": "min_p5",
    "ratio": "max_mean_over_p5",
    "max_ratio": "max_mean_over_p5",
    "max_mean_p5_ratio": "max_mean_over_p5",
    "pass_hat_k": "min_pass_hat_k",
    "min_pass^k": "min_pass_hat_k",
    "consistent_wrong": "max_consistent_wrong",
}


def parse_gate(items: list[str] | dict[str, Any] | None) -> GateConfig:
    """From {"min_mean": 0.5} or ["min_mean=0.5", "min_p5=0.1,max_mean_over_p5=3"]."""
    if not items:
        return GateConfig()
    pairs: dict[str, Any] = {}
    if isinstance(items, dict):
        pairs = dict(items)
    else:
        for item in items:
            for part in item.split(","):
                if not part.strip():
                    continue
                if "=" not in part:
                    raise LabError(f"--gate {part!r}: expected NAME=VALUE, e.g. min_p5=0.2")
                key, value = part.split("=", 1)
                pairs[key.strip()] = value.strip()
    known = {f.name for f in dataclasses.fields(GateConfig)}
    out: dict[str, float] = {}
    for key, value in pairs.items():
        if value is None:
            continue
        name = GATE_ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if name not in known:
            raise LabError(f"gate: unknown threshold {key!r}; use {', '.join(sorted(known))}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise LabError(f"gate: {key} must be a number, got {value!r}") from None
        # NaN compares false with everything, and a negative bound can never fail: a typo, not
        # a gate. (A rate bound above 1 is allowed: it is how a pipeline tests its failure path.)
        if not (math.isfinite(out[name]) and out[name] >= 0):
            raise LabError(f"gate: {key} must be a finite number >= 0, got {value!r}")
    return GateConfig(**out)


#: the names a config (or an older run's settings.json) may give allow_modules: `check_modules`
#: (python checks) and `allow_modules` (agent environments) were two keys for one idea
MODULE_KEYS = ("allow_modules", "check_modules")


def _module_list(value: Any) -> Any:
    """A module list as given: None -> [], "a, b" -> ["a", "b"], a tuple of flags -> a list;
    anything else is returned for the type check to refuse."""
    if value is None:
        return []
    if isinstance(value, str):
        return [m.strip() for m in value.split(",") if m.strip()]
    return list(value) if isinstance(value, list | tuple) else value


def merge_aliases(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with `check_modules` folded into `allow_modules`, the lists joined."""
    out = dict(values)
    if "check_modules" in out:
        alias = out.pop("check_modules")
        given, extra = _module_list(out.get("allow_modules")), _module_list(alias)
        if not (isinstance(given, list) and isinstance(extra, list)):
            raise LabError(f"allow_modules must be a list of module names, got {alias!r}")
        out["allow_modules"] = given + extra
    return out


#: the settings that define the engine (EngineConfig fields)
ENGINE_FIELDS = (
    "backend model dtype device tensor_parallel_size batch_invariant prefix_caching "
    "enforce_eager attention_backend max_num_seqs max_model_len engine_args base_url"
).split()


@dataclass
class SampleConfig:
    """One n-of-k run. Defaults suit the bundled model on a CPU."""

    #: case source: bundled:NAME, a .jsonl / .yaml / .csv file, or a saved datasets dir
    cases: str = "bundled:basic"
    #: sample only the cases carrying at least one of these tags (None: every case)
    only_tags: list[str] | None = None
    #: sample at most this many cases, the first in file order after only_tags (None: all);
    #: a case keeps the seeds it has in the whole set, so its samples match a full run's
    limit: int | None = None
    #: samples per case
    k: int = 32
    #: "vllm" or "hf" (engines in this process), or "openai": an OpenAI-compatible server at
    #: base_url, else a managed vLLM server the lab starts on loopback (its log in the run dir)
    backend: str = "vllm"
    #: bundled model name, checkpoint directory or hub id
    model: str = DEFAULT_MODEL
    #: fp32 / bf16 / fp16, or layercast (hf backend: bf16 weights, fp32 compute)
    dtype: str = "fp32"
    #: auto / cpu / cuda[:N]
    device: str = "auto"
    #: tensor-parallel degree (vllm backend only; must divide the model's attention heads)
    tensor_parallel_size: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    #: 0 disables top-k
    top_k: int = 0
    max_tokens: int = 64
    #: base seed: sample i of case j (its index in the case list) uses seed + j * k + i
    seed: int = 0
    #: True: the seeds above, so no two samples of the run share random numbers (cases still
    #: share engine calls). False: sample i of every case uses seed + i (correlated noise
    #: across cases; the scheme before per-request seeds).
    independent_seeds: bool = True
    #: top alternatives kept per token (0: only the chosen token's logprob; keeps logs small)
    logprobs: int = 0
    #: vLLM max_num_seqs / hf rows per forward pass
    max_num_seqs: int = 64
    #: samples per engine call (one progress line and one resume point per call);
    #: None: 8 x max_num_seqs for vLLM, max_num_seqs for hf
    rows_per_call: int | None = None
    #: vLLM prefix caching (a case's k samples share its prompt's prefill: on the CPU the vllm
    #: backend picks 32-token KV blocks for it unless engine_args sets block_size; hf: none,
    #: recorded as off)
    prefix_caching: bool = True
    #: batch-invariant mode (hf: the lab's kernels; vllm: VLLM_BATCH_INVARIANT=1)
    batch_invariant: bool = False
    #: vLLM: eager mode; False compiles the model first (minutes on a CPU)
    enforce_eager: bool = True
    #: vLLM attention backend name (None: vLLM's choice)
    attention_backend: str | None = None
    #: context length cap (None: the model's own)
    max_model_len: int | None = None
    #: any other vLLM engine argument, passed through as is (`--engine-arg KEY=VALUE`,
    #: e.g. block_size=128 for vLLM's own CPU KV block size)
    engine_args: dict[str, Any] = field(default_factory=dict)
    #: openai backend: the server's OpenAI-compatible base URL (http://HOST:PORT/v1); None: a
    #: managed vLLM server started for the run
    base_url: str | None = None
    #: run directory (None: runs/sample-<cases>-<backend>-k<k>)
    out: str | None = None
    #: sentence-transformers model for diversity (name or path)
    embedder: str = DEFAULT_EMBEDDER
    #: cosine similarity at or above which two outputs share a semantic cluster
    cluster_threshold: float = DEFAULT_THRESHOLD
    #: device for embeddings and similarity matrices
    embed_device: str = "auto"
    #: share of the k samples a case's dominant semantic cluster, and that cluster's verdict,
    #: must hold for the case to count as consistent (correct or wrong; lab.variance.decompose)
    consistent_share: float = 0.8
    #: bootstrap resamples for the headline intervals, and their seed
    bootstrap_samples: int = 1000
    bootstrap_seed: int = 0
    #: price per million tokens: {"input": x, "output": y} (empty: no price in the report)
    prices: dict[str, float] = field(default_factory=dict)
    gate: GateConfig = field(default_factory=GateConfig)
    #: cohort buckets for the report (locale, length_bands, schema_shape, intent, tokenizer;
    #: see lab/cases/cohorts.py); analysis only, not part of the run's identity
    cohorts: dict[str, Any] = field(default_factory=dict)
    #: agent cases (lab.agents): model turns per trajectory at most, replacing each case's own
    #: max_turns (None: the case's)
    max_turns: int | None = None
    #: agent cases: how tool calls travel: auto (the chat template's tools where it has them,
    #: a server's tool parser, else the text protocol), native, or text
    tool_protocol: str = "auto"
    #: code the case file may run (`--allow-module`, repeatable): modules (dotted names or .py
    #: files) whose functions the cases' `python` checks call (lab.cases.codechecks), and the
    #: dotted modules agent cases' environments name; NAME.py beside the case file needs no
    #: listing. `check_modules` is accepted as another name for it (MODULE_KEYS)
    allow_modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._check_types()
        self.cohorts = parse_cohorts(self.cohorts).to_dict()
        if self.backend not in registry.NAMES:
            raise LabError(f"backend must be hf, vllm or openai, got {self.backend!r}")
        if self.base_url is not None and self.backend != "openai":
            raise LabError(f"base_url is for the openai backend, not {self.backend}")
        if self.k < 1:
            raise LabError(f"k must be >= 1, got {self.k}")
        if not 0 < self.cluster_threshold <= 1:
            raise LabError(f"cluster_threshold must be in (0, 1], got {self.cluster_threshold}")
        if not 0.5 < self.consistent_share <= 1:
            raise LabError(f"consistent_share must be in (0.5, 1], got {self.consistent_share}")
        if isinstance(self.gate, dict):
            self.gate = parse_gate(self.gate)
        if not isinstance(self.gate, GateConfig):
            raise LabError(
                f"gate must be a mapping NAME: VALUE (e.g. min_mean: 0.5), got {self.gate!r}"
            )
        if not isinstance(self.prices, dict):
            raise LabError(f"prices must be a mapping {{input: X, output: Y}}, got {self.prices!r}")
        bad = set(self.prices) - {"input", "output"}
        if bad:
            raise LabError(f"prices: unknown key {sorted(bad)[0]!r}; use input and output")
        for key, value in self.prices.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise LabError(f"prices.{key} must be a number >= 0, got {value!r}")
        if self.rows_per_call is not None and self.rows_per_call < 1:
            raise LabError(f"rows_per_call must be >= 1, got {self.rows_per_call}")
        if self.bootstrap_samples < 1:
            raise LabError(f"bootstrap_samples must be >= 1, got {self.bootstrap_samples}")
        if isinstance(self.only_tags, str):  # `only_tags: arith` in YAML, or the flag's text
            self.only_tags = [t.strip() for t in self.only_tags.split(",") if t.strip()]
        if self.only_tags is not None and not (
            self.only_tags and all(isinstance(t, str) and t for t in self.only_tags)
        ):
            raise LabError(f"only_tags must be a non-empty list of tags, got {self.only_tags!r}")
        if self.limit is not None and self.limit < 1:
            raise LabError(f"limit must be >= 1, got {self.limit}")
        if self.max_turns is not None and not 1 <= self.max_turns <= 64:
            raise LabError(f"max_turns must be from 1 to 64, got {self.max_turns}")
        if self.tool_protocol not in ("auto", "native", "text"):
            raise LabError(
                f"tool_protocol must be auto, native or text, got {self.tool_protocol!r}"
            )
        self.allow_modules = _module_list(self.allow_modules)
        if not isinstance(self.allow_modules, list) or not all(
            isinstance(m, str) and m for m in self.allow_modules
        ):
            raise LabError(
                f"allow_modules must be a list of module names or .py files, "
                f"got {self.allow_modules!r}"
            )
        self._check_engine_and_sampling()

    def _check_engine_and_sampling(self) -> None:
        """Fail here, before a run directory is created (or wiped by --fresh), not in the
        engine: the same checks the backend makes, run on the settings alone."""
        if self.tensor_parallel_size < 1:
            raise LabError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        check_backend_supports(self.backend, canonical_dtype(self.dtype), self.tensor_parallel_size)
        check_device_name(self.device)
        check_device_name(self.embed_device)
        SamplingConfig(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_tokens=self.max_tokens,
            n=self.k,
            logprobs=self.logprobs,
        )
        if self.max_num_seqs < 1:
            raise LabError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        self.engine_config()  # the engine's own checks (engine_args, max_model_len, ...)

    def code_policy(self) -> CodePolicy:
        """Which python checks may run: allow_modules, and modules beside the case file."""
        source = None if self.cases.startswith("bundled:") else self.cases.partition("#")[0]
        how = "--allow-module {name} (or allow_modules: [{name}] in the config)"
        return CodePolicy.from_settings(self.allow_modules, source, how)

    def engine_config(self) -> EngineConfig:
        """The engine this run samples through (the same builder as a sweep cell's)."""
        values = {name: getattr(self, name) for name in ENGINE_FIELDS}
        # vLLM's prefix caching: in this process, or in the managed server the lab starts
        managed = self.backend == "openai" and self.base_url is None
        values["prefix_caching"] = self.prefix_caching and (self.backend == "vllm" or managed)
        return EngineConfig.from_values(values)

    def _check_types(self) -> None:
        """YAML gives whatever was typed: `k: "32"` must fail here, not deep in an engine."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = str(f.type).replace(" | None", "")
            if value is None and "None" in str(f.type):
                continue
            ok = {
                "int": isinstance(value, int) and not isinstance(value, bool),
                "float": isinstance(value, int | float) and not isinstance(value, bool),
                "bool": isinstance(value, bool),
                "str": isinstance(value, str),
            }.get(kind, True)
            if not ok:
                raise LabError(f"setting {f.name!r} must be {kind}, got {value!r}")
            if kind == "float":
                setattr(self, f.name, float(value))

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        stem = Path(self.cases.split(":", 1)[-1].partition("#")[0]).stem or "cases"
        if self.only_tags:  # a subset gets its own directory: a full run does not resume it
            stem += "-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", "+".join(self.only_tags))
        if self.limit is not None:
            stem += f"-first{self.limit}"
        return Path("runs") / f"sample-{stem}-{self.backend}-k{self.k}"

    def select(self, cases: list[Case]) -> list[tuple[int, Case]]:
        """(index in the whole case set, case) of the cases to sample: only_tags, then limit.
        The index fixes a case's seeds, so a subset run reproduces a full run's samples."""
        chosen = [
            (i, c)
            for i, c in enumerate(cases)
            if self.only_tags is None or set(self.only_tags) & set(c.tags)
        ]
        if not chosen:
            known = sorted({t for c in cases for t in c.tags})
            raise LabError(
                f"only_tags {self.only_tags}: no case of {self.cases} has one of these tags "
                f"(tags there: {', '.join(known) or 'none'})"
            )
        return chosen if self.limit is None else chosen[: self.limit]

    def calls_rows(self) -> int:
        if self.rows_per_call is not None:
            return self.rows_per_call
        return self.max_num_seqs * (8 if self.backend == "vllm" else 1)

    def identity(self) -> dict[str, Any]:
        """What defines the samples: a resumed run must match it exactly."""
        keep = (
            "k backend model dtype device temperature top_p top_k max_tokens seed "
            "independent_seeds logprobs max_num_seqs prefix_caching"
        ).split()
        return {name: getattr(self, name) for name in keep}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> SampleConfig:
    """SampleConfig from an optional YAML file, then flags (None = not given)."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = load_yaml_file(path)
        if not isinstance(loaded, dict):
            raise LabError(f"{path}: expected a mapping of settings")
        values.update(merge_aliases(loaded))
    known = {f.name for f in dataclasses.fields(SampleConfig)}
    for key in values:
        if key not in known:
            raise LabError(f"{path}: unknown setting {key!r}; see lab/variance/config.py")
    if path is not None and isinstance(values.get("cases"), str):
        # A relative case path in a config file is relative to the file.
        cases = values["cases"]
        if not cases.startswith("bundled:") and not Path(cases).is_absolute():
            values["cases"] = str(Path(path).parent / cases)
    for key, value in overrides.items():
        if value is None or value == () or value == []:
            continue
        if key == "gate":
            merged = dataclasses.asdict(parse_gate(values.get("gate")))
            merged.update(
                {k: v for k, v in dataclasses.asdict(parse_gate(value)).items() if v is not None}
            )
            values["gate"] = merged
        elif key in MODULE_KEYS:  # flags add to the config file's list
            given = values.get("allow_modules")
            values["allow_modules"] = _module_list(given) + _module_list(value)
        elif key == "engine_args":  # flags add to (and override) the config file's mapping
            given = values.get("engine_args")
            values[key] = (dict(given) if isinstance(given, dict) else {}) | dict(value)
        elif key in ("price_in", "price_out"):
            values.setdefault("prices", {})["input" if key == "price_in" else "output"] = value
        else:
            values[key] = value
    try:
        return SampleConfig(**values)
    except TypeError as exc:
        raise LabError(f"bad setting: {exc}") from None


def read_settings(path: str | Path) -> SampleConfig:
    """The SampleConfig a run directory was produced with (its settings.json)."""
    values = merge_aliases(rundir.read_settings(Path(path)))
    try:
        return SampleConfig(**values)
    except TypeError as exc:  # a key this version does not know (hand-edited or newer lab)
        raise LabError(f"{path}/{rundir.SETTINGS}: {exc}") from None
