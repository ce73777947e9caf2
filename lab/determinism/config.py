"""Sweep configuration: a YAML file naming the prompts, the test mode and the grid of axes.

    name: feynman-cpu
    model: smollm2-135m-instruct
    mode: identical            # identical | single | mixed | prefix | shuffled
    prompts:                   # strings, {id, prompt|messages, expected, answer_regex}, or
      - Tell me about Richard Feynman.       # prompts_file: path/to/prompts.jsonl
    sampling: {max_tokens: 128, temperature: 0.0, logprobs: 2}
    axes:                      # every axis optional; the first value of each is the reference
      backend: [vllm]
      dtype: [fp32, bf16]       # fp16; layercast (hf only: bf16 weights, fp32 compute)
      tensor_parallel_size: [1, 3]   # vllm only (refused beside the hf backend)
      batch_size: [1, 8, 64]
      order: [given, shuffled]
      concurrency: [1, 8, 64]  # openai backend only: requests in flight against the server
      num_threads: [1, 2]      # hf / vllm: torch (OpenMP) threads of the engine (null: as is)
      node_kind: [A100, H100]  # --ray only: a Ray custom resource NAME, or a node label KEY=VALUE
    engine_args: {distributed_executor_backend: ray}   # vllm: passed to every engine as is
    repeats: 1
    base_url: http://127.0.0.1:8000/v1   # openai backend: this server, else a managed vLLM

`cases: bundled:agents` (with an optional `agent:` block) in place of prompts makes an agent
sweep: each cell runs one greedy trajectory per agent case (lab.determinism.agentsource).

Unknown keys, wrong types and missing files fail at load with the field named.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.backends import registry
from lab.backends.base import LAYERCAST, SamplingConfig, canonical_dtype
from lab.determinism.agentsource import (
    AGENT_MODE,
    AgentCases,
    agent_cases_from_dict,
    parse_agent_cases,
)
from lab.devices import check_device_name
from lab.errors import ConfigError, LabError
from lab.models import DEFAULT_MODEL
from lab.rundir import SWEEP_CONFIG
from lab.yamlio import check_yaml_duplicate_keys, construct_yaml, load_yaml_file, read_text

MODES = ("identical", "single", "mixed", "prefix", "shuffled")
ORDERS = ("given", "reversed", "shuffled")

# axis name -> (type check, description). Engine axes restart the engine; the rest never do.
ENGINE_AXES = (
    "backend",
    "model",
    "dtype",
    "tensor_parallel_size",
    "batch_invariant",
    "prefix_caching",
    "enforce_eager",
    "attention_backend",
    "max_num_seqs",
    "num_threads",
    "node_kind",
)
# concurrency (openai backend only): how many of a cell's requests are in flight at once against
# the server (None: all of them, which is the only value the offline backends take).
RUN_AXES = ("batch_size", "seed", "order", "concurrency")
# Axes left out of a cell's key and of the run's identity while at their default (None), so the
# run directories made before they existed still resume.
OPTIONAL_AXES = ("concurrency", "num_threads", "node_kind")
AXES = ENGINE_AXES + RUN_AXES
AXIS_TYPES: dict[str, tuple[type, ...]] = {
    "backend": (str,),
    "model": (str,),
    "dtype": (str,),
    "tensor_parallel_size": (int,),
    "batch_invariant": (bool,),
    "prefix_caching": (bool,),
    "enforce_eager": (bool,),
    "attention_backend": (str, type(None)),
    "max_num_seqs": (int,),
    "num_threads": (int, type(None)),
    "node_kind": (str, type(None)),
    "batch_size": (int,),
    "seed": (int, type(None)),
    "order": (str,),
    "concurrency": (int, type(None)),
}
DEFAULT_AXES: dict[str, list[Any]] = {
    "backend": ["hf"],
    "dtype": ["float32"],
    "tensor_parallel_size": [1],
    "batch_invariant": [False],
    "prefix_caching": [False],
    "enforce_eager": [True],
    "attention_backend": [None],
    "max_num_seqs": [256],
    "num_threads": [None],
    "node_kind": [None],
    "batch_size": [1],
    "seed": [0],
    "order": ["given"],
    "concurrency": [None],
}
TOP_KEYS = {
    "name",
    "model",
    "mode",
    "prompts",
    "prompts_file",
    "sampling",
    "axes",
    "repeats",
    "prefix_lengths",
    "answer_regex",
    "device",
    "base_url",
    "engine_args",
    "cases",  # an agent sweep (lab.determinism.agentsource)
    "agent",
}
SAMPLING_KEYS = {"max_tokens", "temperature", "top_p", "top_k", "logprobs"}


@dataclass
class SweepPrompt:
    """A target prompt: its outputs are the ones the sweep compares across cells."""

    id: str
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    #: expected parsed answer, for accuracy per cell (Std@Acc)
    expected: str | None = None
    #: regex whose first group (or whole match) is the answer, for TARa
    answer_regex: str | None = None


@dataclass
class SweepConfig:
    name: str
    mode: str
    prompts: list[SweepPrompt]
    sampling: dict[str, Any]
    axes: dict[str, list[Any]]
    model: str = DEFAULT_MODEL
    repeats: int = 1
    #: prefix mode: shared-prefix lengths in tokens (scaled down to fit the model's context)
    prefix_lengths: list[int] = field(default_factory=lambda: [1, 64, 512, 2048])
    answer_regex: str | None = None
    device: str = "auto"
    #: openai backend: the server to measure (None: a managed vLLM server per engine config)
    base_url: str | None = None
    #: any other engine argument, given to every engine of the grid as is (EngineConfig)
    engine_args: dict[str, Any] = field(default_factory=dict)
    #: an agent sweep's cases (mode "agents", no prompts); None: a prompt sweep
    agents: AgentCases | None = None

    def __post_init__(self) -> None:
        # A config saved before an axis existed (sweep_config.json of an older run) gets its
        # default, so old run directories still load.
        for name, values in DEFAULT_AXES.items():
            self.axes.setdefault(name, list(values))

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def generation_identity(self) -> dict[str, Any]:
        """What decides the generated tokens: a resumed run must match it. Answer parsing
        (answer_regex, expected) and the name only affect scoring, so they may change between
        runs of the same directory."""
        d = self.to_dict()
        for key in ("answer_regex", "name"):
            d.pop(key)
        # Left out when unused, so runs made before these existed still resume.
        if d["base_url"] is None:
            d.pop("base_url")
        for name in OPTIONAL_AXES:
            if d["axes"].get(name) == [None]:
                d["axes"].pop(name)
        if not d["engine_args"]:
            d.pop("engine_args")
        if d["agents"] is None:
            d.pop("agents")
        for prompt in d["prompts"]:
            prompt.pop("expected")
            prompt.pop("answer_regex")
        return d


def _fail(source: str, where: str, message: str) -> LabError:
    return ConfigError(f"{source}: {where}: {message}")


def _check_regex(source: str, where: str, pattern: Any) -> None:
    """An answer regex is compiled when scoring, after every cell ran: check it now."""
    if pattern is None:
        return
    if not isinstance(pattern, str):
        raise _fail(source, where, "must be a regex string")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _fail(source, where, f"invalid regex: {exc}") from None


def _check_sampling(source: str, sampling: dict[str, Any]) -> None:
    """Types and ranges of the sampling block (a bad value must not become failed cells)."""
    for key, value in sampling.items():
        kind = float if key in ("temperature", "top_p") else int
        if isinstance(value, bool) or not isinstance(value, int | float if kind is float else int):
            raise _fail(
                source,
                f"sampling.{key}",
                f"must be {'a number' if kind is float else 'an integer'}, got {value!r}",
            )
    try:
        SamplingConfig(**sampling)
    except LabError as exc:
        raise _fail(source, "sampling", str(exc)) from None


def _parse_prompt(source: str, where: str, raw: Any, index: int) -> SweepPrompt:
    if isinstance(raw, str):
        return SweepPrompt(id=f"p{index}", prompt=raw)
    if not isinstance(raw, dict):
        raise _fail(source, where, "a prompt must be a string or a mapping")
    unknown = set(raw) - {"id", "prompt", "messages", "expected", "answer_regex"}
    if unknown:
        raise _fail(source, where, f"unknown field(s) {sorted(unknown)}")
    if ("prompt" in raw) == ("messages" in raw):
        raise _fail(source, where, "give exactly one of 'prompt' or 'messages'")
    if "prompt" in raw and not (isinstance(raw["prompt"], str) and raw["prompt"].strip()):
        raise _fail(source, f"{where}.prompt", "must be non-empty text")
    _check_regex(source, f"{where}.answer_regex", raw.get("answer_regex"))
    if "messages" in raw and not (
        isinstance(raw["messages"], list)
        and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in raw["messages"])
    ):
        raise _fail(source, f"{where}.messages", "a list of {role, content} mappings")
    expected = raw.get("expected")
    return SweepPrompt(
        id=str(raw.get("id", f"p{index}")),
        prompt=raw.get("prompt"),
        messages=raw.get("messages"),
        expected=None if expected is None else str(expected),
        answer_regex=raw.get("answer_regex"),
    )


def _check_backend_pairs(source: str, axes: dict[str, list[Any]]) -> None:
    """Every value of an axis meets every value of the others, so a TP degree above 1 beside
    the hf backend, or layercast beside vllm / openai, would be a cell that cannot run: refuse
    the config now rather than record failed cells after the sweep."""
    backends = axes["backend"]
    if "hf" in backends and any(tp > 1 for tp in axes["tensor_parallel_size"]):
        tp = max(axes["tensor_parallel_size"])
        raise _fail(
            source,
            "axes.tensor_parallel_size",
            f"{tp} needs the vllm backend, and axes.backend includes hf (transformers runs on one "
            "device); sweep tensor parallelism in a config whose backend is vllm",
        )
    others = [b for b in backends if b != "hf"]
    if others and LAYERCAST in axes["dtype"]:
        raise _fail(
            source,
            "axes.dtype",
            f"layercast (bf16 weights, fp32 compute) is for the hf backend only, and axes.backend "
            f"includes {others[0]}",
        )


def _load_prompts_file(source: str, path: Path) -> list[Any]:
    if not path.is_file():
        raise _fail(source, "prompts_file", f"no such file {path}")
    if path.suffix in (".yaml", ".yml"):
        data = load_yaml_file(path)
        if not isinstance(data, list):
            raise _fail(str(path), "top level", "expected a list of prompts")
        return data
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise _fail(str(path), f"line {number}", f"not JSON ({exc.msg})") from exc
    return rows


def parse_sweep_config(
    data: Any, source: str = "<config>", base_dir: Path | None = None
) -> SweepConfig:
    """Validate a parsed YAML mapping into a SweepConfig; errors name the field."""
    if not isinstance(data, dict):
        raise _fail(source, "top level", "expected a mapping")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise _fail(
            source, "top level", f"unknown key(s) {sorted(unknown)}; known: {sorted(TOP_KEYS)}"
        )
    agents = parse_agent_cases(source, data, base_dir) if "cases" in data else None
    mode = AGENT_MODE if agents is not None else data.get("mode", "single")
    if agents is None and "agent" in data:
        raise _fail(source, "agent", "is for an agent sweep (cases: bundled:agents)")
    if mode not in MODES and agents is None:
        raise _fail(source, "mode", f"{mode!r} is not one of {', '.join(MODES)}")
    raw_prompts: list[Any] = []
    if "prompts_file" in data:
        path = Path(data["prompts_file"])
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        raw_prompts = _load_prompts_file(source, path)
    if "prompts" in data:
        if not isinstance(data["prompts"], list):
            raise _fail(source, "prompts", "expected a list")
        raw_prompts += data["prompts"]
    if not raw_prompts and agents is None:
        raise _fail(
            source, "prompts", "no prompts given (use prompts:, prompts_file: or agent cases:)"
        )
    prompts = [_parse_prompt(source, f"prompts[{i}]", p, i) for i, p in enumerate(raw_prompts)]
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        raise _fail(source, "prompts", "prompt ids must be unique")

    sampling = data.get("sampling", {}) or {}
    if not isinstance(sampling, dict):
        raise _fail(source, "sampling", "expected a mapping")
    bad = set(sampling) - SAMPLING_KEYS
    if bad:
        raise _fail(
            source, "sampling", f"unknown key(s) {sorted(bad)}; known: {sorted(SAMPLING_KEYS)}"
        )
    sampling = {"max_tokens": 64, "temperature": 0.0, "logprobs": 2} | sampling
    _check_sampling(source, sampling)
    _check_regex(source, "answer_regex", data.get("answer_regex"))

    raw_axes = data.get("axes", {}) or {}
    if not isinstance(raw_axes, dict):
        raise _fail(source, "axes", "expected a mapping of axis -> list of values")
    axes: dict[str, list[Any]] = {}
    for name, values in raw_axes.items():
        if name not in AXES:
            raise _fail(source, f"axes.{name}", f"unknown axis; known: {', '.join(AXES)}")
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise _fail(source, f"axes.{name}", "needs at least one value")
        for v in values:
            ok_types = AXIS_TYPES[name]
            # bool is an int subclass: refuse True where an int is meant, and vice versa.
            if not isinstance(v, ok_types) or (isinstance(v, bool) and bool not in ok_types):
                kinds = "/".join(t.__name__ for t in ok_types)
                raise _fail(source, f"axes.{name}", f"value {v!r} is not {kinds}")
        if name == "dtype":
            try:
                values = [canonical_dtype(v) for v in values]
            except LabError as exc:
                raise _fail(source, "axes.dtype", str(exc)) from None
        if name == "backend" and any(v not in registry.NAMES for v in values):
            raise _fail(source, "axes.backend", "values must be hf, vllm or openai")
        if name == "concurrency" and any(v is not None and v < 1 for v in values):
            raise _fail(source, "axes.concurrency", "values must be >= 1 (or null: all at once)")
        if name == "order" and any(v not in ORDERS for v in values):
            raise _fail(source, "axes.order", f"values must be among {', '.join(ORDERS)}")
        if name == "batch_size" and any(v < 1 for v in values):
            raise _fail(source, "axes.batch_size", "values must be >= 1")
        if name == "num_threads" and any(v is not None and v < 1 for v in values):
            raise _fail(source, "axes.num_threads", "values must be >= 1 (or null: as is)")
        if name == "node_kind" and any(v is not None and not v.strip() for v in values):
            raise _fail(source, "axes.node_kind", "values must be non-empty names")
        if len(set(map(repr, values))) != len(values):
            raise _fail(source, f"axes.{name}", "values must be distinct")
        axes[name] = list(values)
    model = data.get("model", DEFAULT_MODEL)
    if not isinstance(model, str) or not model.strip():
        raise _fail(source, "model", f"must be a model name or path, got {model!r}")
    try:
        check_device_name(data.get("device", "auto"))
    except LabError as exc:
        raise _fail(source, "device", str(exc)) from None
    full_axes = {"model": [model]} | DEFAULT_AXES | axes
    _check_backend_pairs(source, full_axes)
    if full_axes["concurrency"] != [None] and set(full_axes["backend"]) != {"openai"}:
        raise _fail(source, "axes.concurrency", "only the openai backend (a server) takes it")
    if full_axes["num_threads"] != [None] and "openai" in full_axes["backend"]:
        raise _fail(
            source, "axes.num_threads", "sets an in-process engine's threads (hf, vllm), and "
            "axes.backend includes openai (a server runs with its own)",
        )  # fmt: skip
    engine_args = data.get("engine_args", {}) or {}
    if not (isinstance(engine_args, dict) and all(isinstance(k, str) for k in engine_args)):
        raise _fail(source, "engine_args", "expected a mapping NAME: VALUE")
    base_url = data.get("base_url")
    if base_url is not None and not (
        isinstance(base_url, str) and base_url.startswith(("http://", "https://"))
    ):
        raise _fail(source, "base_url", "must be an http:// or https:// URL")
    if base_url is not None and set(full_axes["backend"]) != {"openai"}:
        raise _fail(source, "base_url", "is for the openai backend only (axes.backend: [openai])")
    repeats = data.get("repeats", 1)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise _fail(source, "repeats", "must be an integer >= 1")
    prefix_lengths = data.get("prefix_lengths", [1, 64, 512, 2048])
    if not (
        isinstance(prefix_lengths, list)
        and prefix_lengths
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in prefix_lengths)
    ):
        raise _fail(source, "prefix_lengths", "must be a list of positive integers")
    name = str(data.get("name", "sweep"))
    # The default output directory is runs/<name>: a path in the name would leave runs/.
    if name.strip() in ("", ".", "..") or "/" in name or "\\" in name:
        raise _fail(source, "name", f"{name!r} must be a plain name (no / or \\, not . or ..)")
    return SweepConfig(
        name=name,
        mode=mode,
        prompts=prompts,
        sampling=sampling,
        axes=full_axes,
        model=model,
        repeats=repeats,
        prefix_lengths=prefix_lengths,
        answer_regex=data.get("answer_regex"),
        device=str(data.get("device", "auto")),
        base_url=base_url,
        engine_args=engine_args,
        agents=agents,
    )


def config_from_dict(raw: dict[str, Any]) -> SweepConfig:
    """The SweepConfig a run directory's sweep_config.json holds (already validated when the
    sweep started); TypeError / KeyError / AttributeError when the file was damaged."""
    prompts = [SweepPrompt(**p) for p in raw["prompts"]]
    return SweepConfig(
        **(raw | {"prompts": prompts, "agents": agent_cases_from_dict(raw.get("agents"))})
    )


def read_run_config(run_dir: str | Path, what: str = "a sweep run directory") -> SweepConfig:
    """The config a sweep run stored (sweep_config.json), parsed: the one reader every verb
    that opens a finished sweep uses. LabError (one line) for a directory without one or a
    damaged, hand-edited file."""
    root = Path(run_dir)
    path = root / SWEEP_CONFIG
    if not path.is_file():
        raise LabError(f"{root}: not {what} (no {SWEEP_CONFIG})")
    try:
        return config_from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise LabError(f"{path}: not a readable sweep config ({exc!r})") from None


def load_sweep_config(path: str | Path) -> SweepConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        root = yaml.compose(read_text(path), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "parse"
        problem = getattr(exc, "problem", None) or "parse error"
        raise ConfigError(f"{path}: {where}: invalid YAML ({problem})") from None
    check_yaml_duplicate_keys(root, path)
    data = construct_yaml(root, path)
    return parse_sweep_config(data, str(path), path.parent)
