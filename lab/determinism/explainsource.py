"""What `lab explain` replays: the two recorded outputs of one case that part, the two settings
that made them, and how to rebuild the batch that case ran in.

Three kinds of pair, read through the run directories' own readers:
- a sweep (lab.determinism.cells): two cells of one sweep (RUN_A == RUN_B with --cell-a /
  --cell-b, or the first pair of lab.determinism.pairs whose tokens part), or the reference
  cells of two sweeps of the same prompts; the batch is the cell's (lab.determinism.modes);
- two n-of-k runs (lab.samplerun): sample i of a case in A against sample i in B; the case is
  replayed as one request with the recorded seed of that sample;
- two agent runs: trajectory i of a case against trajectory i, at the step where they part
  (lab.agents.divergence.split), read by lab.agents.explainpair (the step's prompt rebuilt
  from A's history, the recorded calls run again on a fresh environment, as a resume does).

    pair = load_pair("runs/sweep", None, "feynman", cell_a="dtype=float32", cell_b=None)
    requests, target = pair.batch(pair.setting_a)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import rundir
from lab.backends.base import Generation, Request, SamplingConfig
from lab.cases.model import Case
from lab.determinism.explainpair import Pair
from lab.determinism.explainsweep import sweep_pair
from lab.determinism.modes import filler_requests, order_requests
from lab.errors import LabError
from lab.rundir import CONFIG, run_kind_of

#: (run_a, run_b, case, sample) -> the pair of two agent runs (lab.agents.explainpair)
AgentReader = Callable[[str, str, "str | None", "int | None"], "Pair | None"]
#: the settings a replay varies: the engine's fields, and the batch the case runs in
SETTING_KEYS = (
    "backend", "model", "dtype", "tensor_parallel_size", "batch_invariant", "prefix_caching",
    "enforce_eager", "attention_backend", "max_num_seqs", "num_threads", "batch_size", "order",
    "seed",
)  # fmt: skip


def json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"{path}: missing ({what})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{path}: cannot read {what} ({exc})") from None


def kind_of(path: str) -> str:
    """'sweep', 'sample' or 'agent' for a run directory `lab explain` can read; else one line."""
    root = Path(path)
    if not root.is_dir():
        raise LabError(f"{root}: no such run directory")
    kind = run_kind_of(root)
    if kind == "sweep":
        from lab.determinism.agentsource import is_agent_sweep

        if is_agent_sweep(root):
            raise LabError(f"{root}: an agent sweep; explain two agent runs (lab sample) instead")
        return "sweep"
    if kind == "sample":
        return "agent" if rundir.is_agent_run(root) else "sample"
    found = f"a {kind} run" if kind else "no lab run"
    raise LabError(f"{root}: holds {found}; lab explain reads a sweep or lab sample run")


def load_pair(
    run_a: str,
    run_b: str | None,
    case: str | None,
    cell_a: str | None = None,
    cell_b: str | None = None,
    sample: int | None = None,
    agent_reader: AgentReader | None = None,
) -> Pair | None:
    """The pair to explain; None when the two runs do not part on any case (or on `case`).
    `agent_reader`: how two agent runs are paired (lab.agents.explainpair.agent_pair; passed
    in, since lab.determinism never imports lab.agents)."""
    kind = kind_of(run_a)
    if run_b is not None and kind_of(run_b) != kind:
        raise LabError(f"{run_a} is a {kind} run and {run_b} a {kind_of(run_b)} run; "
                       "explain two runs of one kind")  # fmt: skip
    if kind == "sweep":
        return sweep_pair(run_a, run_b or run_a, case, cell_a, cell_b)
    if run_b is None or Path(run_b).resolve() == Path(run_a).resolve():
        raise LabError(f"{run_a}: a {kind} run holds one setting; give a second run RUN_B")
    if cell_a or cell_b:
        raise LabError("--cell-a / --cell-b pick cells of a sweep; these are lab sample runs")
    if kind == "agent":
        if agent_reader is None:
            raise LabError(f"{run_a}: an agent run; lab explain reads it (lab.agents.explainpair)")
        return agent_reader(run_a, run_b, case, sample)
    return sample_pair(run_a, run_b, case, sample)


# --- n-of-k runs --------------------------------------------------------------------------


def run_setting(config: dict[str, Any]) -> dict[str, Any]:
    """An n-of-k run's setting (config.json's engine), replayed alone (batch 1)."""
    engine = config.get("engine")
    if not isinstance(engine, dict):
        raise LabError(f"{CONFIG}: no 'engine' mapping; not a lab sample run")
    setting = {k: engine.get(k) for k in SETTING_KEYS if k in engine}
    return setting | {"batch_size": 1, "order": "given", "seed": config.get("seed")}


def engine_fixed(engine: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in engine.items() if k not in SETTING_KEYS}


def sampling_of(config: dict[str, Any], path: str) -> SamplingConfig:
    keys = ("temperature", "top_p", "top_k", "max_tokens")
    missing = [k for k in keys if k not in config]
    if missing:
        raise LabError(f"{path}/{CONFIG}: field '{missing[0]}' missing; not a lab sample run")
    # two alternatives at least: the gap at the divergence needs them
    logprobs = max(2, config.get("logprobs") or 0)
    return SamplingConfig(**{k: config[k] for k in keys}, logprobs=logprobs)


def check_same_sampling(config_a: dict[str, Any], config_b: dict[str, Any], a: str, b: str) -> None:
    """Two runs of one case under two settings sample the same way; else they are no pair."""
    for key in ("temperature", "top_p", "top_k"):
        if config_a.get(key) != config_b.get(key):
            raise LabError(f"{a} and {b} sample differently ({key} {config_a.get(key)} vs "
                           f"{config_b.get(key)}); lab explain replays one sampling")  # fmt: skip


def first_parting(
    rows_a: dict[str, list[Any]], rows_b: dict[str, list[Any]], case: str | None,
    parts: Callable[[Any, Any], bool], a: str, b: str,
) -> tuple[str, int] | None:  # fmt: skip
    """The (case, index) of the first pair of samples that part (the given case's only);
    bad input when the runs share no case or lack the one asked for."""
    shared = [c for c in rows_a if c in rows_b]
    if not shared:
        raise LabError(f"{a} and {b} share no case; lab explain pairs one case's samples")
    if case is not None:
        if case not in rows_a or case not in rows_b:
            where = b if case in rows_a else a
            raise LabError(f"{where}: no finished case {case!r} (cases: {', '.join(shared[:5])})")
        shared = [case]
    for name in shared:
        for i, (x, y) in enumerate(zip(rows_a[name], rows_b[name], strict=False)):
            if parts(x, y):
                return name, i
    return None


#: (run dir) -> its finished records by case, in sample order
RowsOf = Callable[[Path], dict[str, list[dict[str, Any]]]]


@dataclass
class TwoRuns:
    """Two n-of-k (or agent) runs read for a pair: configs, A's cases, records by case."""

    config_a: dict[str, Any]
    config_b: dict[str, Any]
    cases: dict[str, Case]
    rows_a: dict[str, list[dict[str, Any]]]
    rows_b: dict[str, list[dict[str, Any]]]


def read_two_runs(run_a: str, run_b: str, rows_of: RowsOf) -> TwoRuns:
    """Both runs' configs and records, refused in one line when they sample differently or a
    case they share has another prompt in each."""
    config_a = json_file(Path(run_a) / rundir.CONFIG, "the run's config")
    config_b = json_file(Path(run_b) / rundir.CONFIG, "the run's config")
    check_same_sampling(config_a, config_b, run_a, run_b)
    cases_a = {c.id: c for c in rundir.read_cases(Path(run_a))}
    cases_b = {c.id: c for c in rundir.read_cases(Path(run_b))}
    rows_a, rows_b = rows_of(Path(run_a)), rows_of(Path(run_b))
    for name in set(rows_a) & set(rows_b):
        if cases_a[name].request() != cases_b[name].request():
            raise LabError(f"{run_a} and {run_b}: case {name!r} has another prompt in each run")
    return TwoRuns(config_a, config_b, cases_a, rows_a, rows_b)


def lone_batch(request: Request) -> Callable[[dict[str, Any]], tuple[list[Request], str]]:
    """The batch of a case replayed on its own: the request with the setting's seed, and
    batch_size - 1 fillers (lab.determinism.modes) beside it."""

    def batch(setting: dict[str, Any]) -> tuple[list[Request], str]:
        target = dataclasses.replace(request, seed=setting.get("seed"))
        reqs = [target] + filler_requests(int(setting["batch_size"]) - 1)
        return order_requests(reqs, setting["order"], 0), target.id

    return batch


def _samples(path: Path) -> dict[str, list[dict[str, Any]]]:
    return {e["case_id"]: e["generations"] for e in rundir.read_entries(path)}


def sample_pair(run_a: str, run_b: str, case: str | None, sample: int | None) -> Pair | None:
    runs = read_two_runs(run_a, run_b, _samples)
    config_a, config_b, rows_a, rows_b = runs.config_a, runs.config_b, runs.rows_a, runs.rows_b
    if sample is not None:
        if case is None:
            raise LabError("--sample picks a sample of one case; name the CASE too")
        rows_a = {k: v[sample : sample + 1] for k, v in rows_a.items()}
        rows_b = {k: v[sample : sample + 1] for k, v in rows_b.items()}
    found = first_parting(
        rows_a, rows_b, case, lambda x, y: x["output_token_ids"] != y["output_token_ids"],
        run_a, run_b,
    )  # fmt: skip
    if found is None:
        return None
    name, i = found
    index = i + (sample or 0)
    record_a = Generation.from_dict(rows_a[name][i])
    record_b = Generation.from_dict(rows_b[name][i])
    sampling = sampling_of(config_a, run_a)
    notes = [f"replayed alone (batch 1), not in the run's engine call of "
             f"{config_a.get('k', '?')} samples per case"]  # fmt: skip
    setting_a, setting_b = run_setting(config_a), run_setting(config_b)
    if not sampling.greedy:
        if record_a.seed is None:
            sampling = dataclasses.replace(sampling, temperature=0.0)
            notes.append(f"sampled at T={config_a['temperature']} without a recorded seed: "
                         "compared at temperature 0 on the same prompt")  # fmt: skip
        else:  # sample i of the case was drawn with this seed: the replay draws it again
            setting_a["seed"], setting_b["seed"] = record_a.seed, record_b.seed
            notes.append(f"sampled at T={config_a['temperature']}: replayed with the recorded "
                         f"seed {record_a.seed}")  # fmt: skip
    return Pair(
        kind="sample", case=name, runs=(run_a, run_b),
        names=(f"{run_a} sample {index}", f"{run_b} sample {index}"),
        setting_a=setting_a, setting_b=setting_b, record_a=record_a, record_b=record_b,
        sampling=sampling, engine_fixed=engine_fixed(config_a["engine"]),
        batch=lone_batch(runs.cases[name].request()), notes=notes,
    )  # fmt: skip
