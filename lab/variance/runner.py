"""Sample every case k times through one engine, resumably, then analyze and write the report.

Throughput: cases go to the backend in as few calls as the resume granularity allows
(`rows_per_call` samples per call; vLLM gets n=k per request and schedules the call as one
continuous batch; the hf backend prefills each prompt once and expands it to k rows). After
each call every case's k samples are appended to `samples.jsonl` as ONE line through
lab.store.RunStore, so a killed run resumes at the next unfinished case and never duplicates.
Progress goes to stderr: a line as each engine call starts (which call, how many cases, the
longest prompt), a line every 30 s while it runs, and samples done, output tokens/s and ETA
after it. The samples per call and the grouping of cases into calls (hf: by prompt length,
plan_calls) are kept in `batching.json`: they decide which cases share a batch, so a resume
uses the same.

Seeds: case j (its index in the case list) is sent with its own base seed seed + j * k
(Request.seed), so sample i of case j uses seed + j * k + i and no two samples of the run share
random numbers, while cases still share one engine call. Each Generation records its seed, so
any sample regenerates alone. `independent_seeds: false` gives the older shared scheme (sample i
of every case uses seed + i), which correlates the noise across cases within a run.

    lab sample --cases bundled:basic --k 32 --backend vllm --out runs/basic
    from lab.variance.runner import run_sample
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import rundir, samplerun
from lab.backends import (
    Backend,
    EngineConfig,
    Generation,
    Request,
    SamplingConfig,
    load_backend,
)
from lab.backends.registry import preflight
from lab.cases.codechecks import resolve_checks
from lab.cases.loaders import load_cases
from lab.cases.model import Case, cases_fingerprint
from lab.console import engine_output
from lab.envinfo import environment_record, placement
from lab.errors import LabError
from lab.models import check_model
from lab.progress import Heartbeat
from lab.rundir import ENGINE_LOG, SAMPLES
from lab.store import RunStore, raise_if_interrupted
from lab.variance import report
from lab.variance.config import SampleConfig
from lab.variance.result import RunReport


@dataclass
class RunOutcome:
    path: Path
    #: cases sampled now (not counting those a previous run finished)
    sampled_cases: int
    #: all cases finished (False when stopped early)
    complete: bool
    #: the report written (None when stopped early)
    report: RunReport | None = None


def engine_config(config: SampleConfig) -> EngineConfig:
    return config.engine_config()


def sampling_config(config: SampleConfig, seed: int) -> SamplingConfig:
    return SamplingConfig(
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        max_tokens=config.max_tokens,
        seed=seed,
        n=config.k,
        logprobs=config.logprobs,
    )


def case_seed(config: SampleConfig, case_index: int) -> int:
    """Base seed of a case: sample i of case j uses seed + j * k + i (independent seeds)."""
    return config.seed + (case_index * config.k if config.independent_seeds else 0)


#: a prompt this many characters or shorter counts as this long when calls are grouped: short
#: prompts share a call whatever their lengths (decoding, not the prompt, dominates them)
SHORT_PROMPT_CHARS = 512
#: a call's longest prompt is at most this many times its shortest (grouping "length")
LENGTH_RATIO = 2.0


def prompt_chars(case: Case) -> int:
    """A case's prompt length in characters (system, prompt and every message)."""
    texts = [case.system or "", case.prompt or ""]
    texts += [str(m.get("content", "")) for m in case.messages or []]
    return sum(len(t) for t in texts)


def plan_calls(
    cases: list[tuple[int, Case]], config: SampleConfig, grouping: str = "order"
) -> list[list[tuple[int, Case]]]:
    """Group (case index, case) into engine calls of about rows_per_call samples.

    "order": in case order. "length": cases sorted by prompt length (ties in case order), and
    a new call starts where a prompt is over LENGTH_RATIO times the call's shortest, so one
    long prompt does not pad every row of a call (the hf backend pads each batch to its
    longest prompt: one 3000-word case made its call ~15x slower). Plan the whole case list,
    not the unfinished part, so a resumed run groups its cases as the first start did."""
    per_call = max(1, config.calls_rows() // config.k)
    if grouping == "order":
        return [cases[i : i + per_call] for i in range(0, len(cases), per_call)]
    calls: list[list[tuple[int, Case]]] = []
    shortest = 0
    for item in sorted(cases, key=lambda ic: (max(prompt_chars(ic[1]), SHORT_PROMPT_CHARS), ic[0])):
        length = max(prompt_chars(item[1]), SHORT_PROMPT_CHARS)
        if not calls or len(calls[-1]) >= per_call or length > LENGTH_RATIO * shortest:
            calls.append([])
            shortest = length
        calls[-1].append(item)
    return calls


def open_run(
    config: SampleConfig, cases: list[Case], backend_config: EngineConfig, fresh: bool
) -> RunStore:
    identity = config.identity() | {
        "engine": backend_config.to_dict(),
        "cases_source": config.cases,
        "cases_fingerprint": cases_fingerprint(cases),
    }
    return samplerun.open_run(
        config.out_dir(),
        identity,
        cases,
        config.to_dict(),
        config.calls_rows(),
        fresh,
        environment_record(),
        # the hf backend pads a batch to its longest prompt; vLLM schedules each sequence
        "length" if backend_config.backend == "hf" else "order",
    )


class Progress:
    """Samples done, output tokens per second and ETA, one line per engine call (and, while a
    call runs, a line every LAB_PROGRESS_INTERVAL seconds: lab.progress.Heartbeat)."""

    def __init__(self, total: int, done: int, emit: Callable[[str], None]) -> None:
        self.total, self.done, self.emit = total, done, emit
        self.tokens = 0
        self.started = time.perf_counter()
        self.new = 0

    def update(self, samples: int, tokens: int) -> None:
        self.done += samples
        self.new += samples
        self.tokens += tokens
        elapsed = time.perf_counter() - self.started
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        eta = elapsed / self.new * (self.total - self.done) if self.new else 0.0
        self.emit(
            f"sampled {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%)  "
            f"{rate:.1f} tok/s out  elapsed {elapsed:.0f}s  eta {eta:.0f}s"
        )


def pending_calls(
    config: SampleConfig, store: RunStore, cases: list[Case], positions: dict[str, int] | None
) -> tuple[list[list[tuple[int, Case]]], set[str]]:
    """The engine calls still to make, in order, and the cases already sampled. The whole case
    list is planned, then finished cases dropped, so a resume keeps the first grouping (and
    so does a Ray run, whatever its replicas: lab.scale.sample). `positions`: each case's
    index in the whole case set (its seeds follow from it); by default its index in `cases`."""
    done = store.done_keys(SAMPLES)
    where = positions or {c.id: i for i, c in enumerate(cases)}
    everything = [(where[c.id], c) for c in cases]
    planned = plan_calls(everything, config, rundir.read_grouping(store.path))
    calls = [rest for call in planned if (rest := [ic for ic in call if ic[1].id not in done])]
    return calls, done


def call_requests(config: SampleConfig, call: list[tuple[int, Case]]) -> list[Request]:
    """One engine call's requests: each case with its own base seed (case_seed)."""
    return [dataclasses.replace(c.request(), seed=case_seed(config, index)) for index, c in call]


def record_call(
    store: RunStore,
    config: SampleConfig,
    call: list[tuple[int, Case]],
    records: list[Generation],
    wall: float,
    where: dict[str, Any] | None = None,
) -> int:
    """Append one finished engine call: a samples line per case (its k generations, its share
    of the call's wall time, where the call ran). Every case is checked before any is written,
    so a call the backend answered short leaves no line; returns the call's sample rows.
    A case with a failed sample (a server's error: the openai backend) gets no line either,
    the call's other cases do, and then the run stops with one line (the same command resumes
    it): a server's failure is not the model's output."""
    by_case: dict[str, list[Generation]] = {}
    for g in records:
        by_case.setdefault(g.request_id, []).append(g)
    rows = sum(len(v) for v in by_case.values())
    lines = []
    failures: list[str] = []
    for _, case in call:
        gens = sorted(by_case.get(case.id, []), key=lambda g: g.sample_index)
        if len(gens) != config.k:
            raise LabError(f"case {case.id!r}: backend returned {len(gens)} of {config.k} samples")
        errors = [g.error or "error" for g in gens if g.finish_reason == "error"]
        if errors:
            failures.append(f"case {case.id!r}: {len(errors)} of {config.k} samples failed "
                            f"({errors[0]})")  # fmt: skip
            continue
        line: dict[str, Any] = {
            "case_id": case.id,
            # this case's share of the call's wall time, by sample count
            "wall_s": wall * len(gens) / max(rows, 1),
            "call_wall_s": wall,
            "call_cases": len(call),
            "generations": [g.to_dict() for g in gens],
        }
        if where is not None:
            line["placement"] = where
        lines.append(line)
    for line in lines:
        store.append(SAMPLES, line["case_id"], line)
    if failures:
        raise LabError(
            f"{failures[0]}; {len(failures)} case(s) of this call not stored, the others "
            "are: run the same command to resume"
        )
    return rows


def sample_cases(
    config: SampleConfig,
    backend: Backend,
    store: RunStore,
    cases: list[Case],
    emit: Callable[[str], None],
    stop_after_cases: int | None = None,
    positions: dict[str, int] | None = None,
) -> tuple[int, bool]:
    """Sample the unfinished cases; returns (cases sampled now, whether all are done).

    `positions`: each case's index in the whole case set (its seeds follow from it), when
    `cases` is a selection; by default its index in `cases`."""
    calls, done = pending_calls(config, store, cases, positions)
    progress = Progress(len(cases) * config.k, len(done) * config.k, emit)
    if done:
        emit(f"resuming: {len(done)} of {len(cases)} cases already sampled in {store.path}")
    where = placement(backend.config)
    sampled = 0
    for number, call in enumerate(calls, 1):
        raise_if_interrupted()  # a Ctrl-C swallowed during the engine load or the last call
        if stop_after_cases is not None and sampled >= stop_after_cases:
            return sampled, False
        if stop_after_cases is not None:
            call = call[: stop_after_cases - sampled]
        longest = max(prompt_chars(c) for _, c in call)
        label = f"call {number}/{len(calls)} ({len(call)} cases x k={config.k})"
        emit(f"{label}: prompts up to {longest} chars, starting")
        started = time.perf_counter()
        requests = call_requests(config, call)
        with Heartbeat(emit, label):
            records = backend.generate(requests, sampling_config(config, config.seed))
        wall = time.perf_counter() - started
        rows = record_call(store, config, call, records, wall, where)
        sampled += len(call)
        progress.update(rows, sum(len(g.output_token_ids) for g in records))
    return sampled, True


#: another way to sample a run's unfinished cases (lab.scale.sample: on Ray replicas):
#: (config, store, cases, emit, positions) -> (cases sampled now, whether all are done)
Sampler = Callable[
    [SampleConfig, RunStore, list[Case], Callable[[str], None], dict[str, int]], tuple[int, bool]
]


def run_sample(
    config: SampleConfig,
    backend: Backend | None = None,
    fresh: bool = False,
    emit: Callable[[str], None] = print,
    stop_after_cases: int | None = None,
    cache_dir: str | None = None,
    sampler: Sampler | None = None,
    cases: list[Case] | None = None,
) -> RunOutcome:
    """The whole job: sample (resuming), then analyze and write every artifact.

    `backend`: an already running engine to use (tests pass their session engine); its own
    config is what the run records. `stop_after_cases` stops after that many newly sampled
    cases without writing the report (what a kill leaves behind). `sampler`: sample the
    unfinished cases another way (lab.scale.sample: replicas on Ray) instead of loading an
    engine here; the same run directory, calls, seeds and report. `cases`: the whole case
    source already parsed (load_cases(config.cases)), so that `lab sample` parses it once.
    """
    whole = load_cases(config.cases) if cases is None else cases
    selected = config.select(whole)
    cases = [c for _, c in selected]
    agents = [c.id for c in cases if c.agent is not None]
    if agents:  # tools need the trajectory runner (lab.agents, through `lab sample`)
        raise LabError(
            f"{config.cases}: case {agents[0]!r} declares tools; agent cases run through "
            "lab sample's trajectory runner, not single-turn sampling"
        )
    resolve_checks(cases, config.code_policy())  # code in the case file: only if allowed
    positions = {c.id: i for i, c in selected}
    backend_config = backend.config if backend is not None else engine_config(config)
    if backend is not None and backend_config.backend != config.backend:
        config = dataclasses.replace(config, backend=backend_config.backend)
    if backend is None and config.base_url is None:  # a server's model is the server's
        check_model(config.model, cache_dir)  # like every other input, before the directory
    if backend is None and sampler is None and config.base_url is None:  # an engine starts here
        preflight(backend_config, cache_dir)  # what it would refuse, before the directory
    store = open_run(config, cases, backend_config, fresh)
    chosen = f" (selected from {len(whole)})" if len(cases) < len(whole) else ""
    emit(f"run directory {store.path}: {len(cases)} cases{chosen} x k={config.k}")
    # the engine's and the embedder's chatter (warnings, weight-loading bars): engine.log
    with engine_output(store.path / ENGINE_LOG):
        sampled, complete = (0, True)
        if backend is None and store.done_keys(SAMPLES) >= {c.id for c in cases}:
            emit("all cases already sampled; rebuilding the report")
        elif sampler is not None:
            raise_if_interrupted()
            sampled, complete = sampler(config, store, cases, emit, positions)
        else:
            raise_if_interrupted()  # swallowed earlier (a quickstart step): no engine start
            # a managed server (openai backend without base_url) logs into the run directory
            backend = backend or load_backend(backend_config, cache_dir, log_dir=store.path)
        if backend is not None:
            sampled, complete = sample_cases(
                config, backend, store, cases, emit, stop_after_cases, positions
            )
        if not complete:
            return RunOutcome(store.path, sampled, False)
        policy = config.code_policy()
        written = report.build_report(store.path, config, emit=emit, policy=policy, cases=cases)
    return RunOutcome(store.path, sampled, True, written)
